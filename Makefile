# bucketfs: `make demo` mounts a local sample bucket at ./mnt; `make test`
# runs every test against a real S3 server and real FUSE mounts.
GO      ?= go
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Packages with unit tests: everything but the end-to-end suite.
UNIT_PKGS = $(shell $(GO) list ./... | grep -v /integration)

.PHONY: all build image deps vet unit integration test demo bench compare fuzz soak versitygw clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/bucketfs ./cmd/bucketfs

# A static binary (bin/bucketfs-static) and the container image holding it,
# bin/bucketfs-image.tar, built without Docker by deploy/image: an empty base,
# /bucketfs, this machine's CA bundle, entrypoint /bucketfs. Load it with
# `docker load -i bin/bucketfs-image.tar`, `k3s ctr -n k8s.io images import
# bin/bucketfs-image.tar` or `ctr -n k8s.io images import
# bin/bucketfs-image.tar`. Tagged $(IMAGE):$(VERSION) and $(IMAGE):latest
# (the tag deploy/kubernetes runs). IMAGE_ARCH=arm64 builds for arm64 nodes.
IMAGE ?= ghcr.io/bucketfs/bucketfs
IMAGE_ARCH ?= $(shell $(GO) env GOARCH)
image:
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/bucketfs-static ./cmd/bucketfs
	GOOS= GOARCH= $(GO) run ./deploy/image -bin bin/bucketfs-static -out bin/bucketfs-image.tar \
		-tag $(IMAGE):$(VERSION) -tag $(IMAGE):latest

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || (echo "gofmt needed:"; gofmt -l .; exit 1)

unit:
	$(GO) test -race -count=1 $(UNIT_PKGS)

# Installs versitygw into the per-user cache when missing, starts it on
# 127.0.0.1, and mounts the real binary. Needs root (or fusermount) and
# /dev/fuse. The tests and the daemon they mount run with the race detector.
integration:
	BUCKETFS_RACE=1 $(GO) test -race -count=1 -timeout 30m ./integration/...

# Programs the end-to-end tests run (setfattr/getfattr, mount.fuse3, and
# ffmpeg and rsync writing into the mount), from Debian's packages when
# missing.
deps:
	@command -v getfattr >/dev/null || { echo "installing Debian package attr"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq attr || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq attr; }; }
	@test -x /sbin/mount.fuse3 || { echo "installing Debian package fuse3"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3; }; }
	@command -v ffmpeg >/dev/null || { echo "installing Debian package ffmpeg"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg; }; }
	@command -v rsync >/dev/null || { echo "installing Debian package rsync"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsync || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsync; }; }

test: deps vet unit integration

# Installs versitygw if missing, seeds a sample bucket, mounts it at ./mnt.
demo:
	$(GO) build -o .demo/demo ./integration/demo
	.demo/demo

# Speed and memory against the limit measured in the same run; writes
# integration/BENCHMARKS.md. Takes about fifteen minutes and up to 16 GiB of disk.
# BENCH_ONLY=1,2,8a runs only those workloads (and leaves BENCHMARKS.md as
# it was); BENCH_PROFILE=dir saves CPU profiles of the daemon of
# workloads 1, 2 and 8a there.
bench:
	$(GO) test -tags bench -count=1 -run TestBench -v -timeout 40m ./integration/

# bucketfs against rclone mount and s3fs (and geesefs, tigrisfs and
# mountpoint-s3 when on PATH or named by GEESEFS=, TIGRISFS=, MOUNT_S3=) on
# the same workloads, server and 20 ms proxy; writes integration/COMPARE.md,
# integration/compare.png and the README's "Comparison with other mounts".
# Installs the Debian packages rclone, s3fs and fuse3 when missing. Needs
# root (it drops the page cache); takes under fifteen minutes and about
# 12 GiB of disk.
compare:
	@for p in rclone:rclone s3fs:s3fs mount.fuse3:fuse3; do \
		cmd=$${p%%:*}; pkg=$${p#*:}; \
		command -v $$cmd >/dev/null || test -x /sbin/$$cmd || { echo "installing Debian package $$pkg"; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkg || \
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkg; }; }; \
	done
	$(GO) test -tags compare -count=1 -run '^TestCompare$$' -v -timeout 30m ./integration/compare/

# The soak test for SOAKTIME (20s in make test).
SOAKTIME ?= 5m
soak:
	BUCKETFS_RACE=0 BUCKETFS_SOAK=$(SOAKTIME) $(GO) test -count=1 -run '^TestSoak$$' -v -timeout 2h ./integration/

# Each fuzz target for FUZZTIME (their seeds also run in `make unit`).
FUZZTIME ?= 20s
fuzz:
	$(GO) test -run XXX -fuzz '^FuzzListingNames$$' -fuzztime $(FUZZTIME) ./fs/
	$(GO) test -run XXX -fuzz '^FuzzListingPages$$' -fuzztime $(FUZZTIME) ./fs/
	$(GO) test -run XXX -fuzz '^FuzzBlockFile$$' -fuzztime $(FUZZTIME) ./cache/
	$(GO) test -run XXX -fuzz '^FuzzParseRestore$$' -fuzztime $(FUZZTIME) ./store/
	$(GO) test -run XXX -fuzz '^FuzzParseSize$$' -fuzztime $(FUZZTIME) ./cmd/bucketfs/
	$(GO) test -run XXX -fuzz '^FuzzParseMinFree$$' -fuzztime $(FUZZTIME) ./cmd/bucketfs/
	$(GO) test -run XXX -fuzz '^FuzzMountCommandLine$$' -fuzztime $(FUZZTIME) ./cmd/bucketfs/

versitygw:
	$(GO) run ./integration/harness/install

clean:
	rm -rf bin .demo
