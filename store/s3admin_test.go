package store

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
)

// adminServer is a minimal S3 server for the bucket calls: it keeps a set
// of buckets, each with a set of keys, and records the credentials and
// location constraints it was sent.
type adminServer struct {
	mu          sync.Mutex
	buckets     map[string]map[string]bool // GUARDED_BY(mu)
	constraints []string                   // GUARDED_BY(mu)
	accessKeys  []string                   // GUARDED_BY(mu)
	deleteCalls int                        // GUARDED_BY(mu)
	locked      string                     // a key DeleteObjects refuses
}

func (a *adminServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if auth := r.Header.Get("Authorization"); auth != "" {
		if _, cred, ok := strings.Cut(auth, "Credential="); ok {
			key, _, _ := strings.Cut(cred, "/")
			a.accessKeys = append(a.accessKeys, key)
		}
	}
	bucket := strings.Trim(r.URL.Path, "/")
	body, _ := io.ReadAll(r.Body)
	switch {
	case r.Method == http.MethodPut:
		var cfg struct {
			LocationConstraint string
		}
		xml.Unmarshal(body, &cfg)
		a.constraints = append(a.constraints, cfg.LocationConstraint)
		if _, ok := a.buckets[bucket]; ok {
			s3Error(w, http.StatusConflict, "BucketAlreadyOwnedByYou", "BucketAlreadyOwnedByYou")
			return
		}
		if bucket == "someone-elses" {
			s3Error(w, http.StatusConflict, "BucketAlreadyExists", "BucketAlreadyExists")
			return
		}
		a.buckets[bucket] = map[string]bool{}
	case r.Method == http.MethodDelete:
		keys, ok := a.buckets[bucket]
		switch {
		case !ok:
			s3Error(w, http.StatusNotFound, "NoSuchBucket", "NoSuchBucket")
		case len(keys) > 0:
			s3Error(w, http.StatusConflict, "BucketNotEmpty", "BucketNotEmpty")
		default:
			delete(a.buckets, bucket)
			w.WriteHeader(http.StatusNoContent)
		}
	case r.Method == http.MethodPost && r.URL.Query().Has("delete"):
		a.deleteCalls++
		var req struct {
			Object []struct{ Key string }
		}
		if err := xml.Unmarshal(body, &req); err != nil {
			s3Error(w, http.StatusBadRequest, "MalformedXML", "MalformedXML")
			return
		}
		if len(req.Object) > MaxDeleteKeys {
			s3Error(w, http.StatusBadRequest, "MalformedXML", "MalformedXML")
			return
		}
		keys, ok := a.buckets[bucket]
		if !ok {
			s3Error(w, http.StatusNotFound, "NoSuchBucket", "NoSuchBucket")
			return
		}
		var errs strings.Builder
		for _, o := range req.Object {
			if o.Key == a.locked {
				fmt.Fprintf(&errs, "<Error><Key>%s</Key><Code>AccessDenied</Code><Message>locked</Message></Error>", o.Key)
				continue
			}
			delete(keys, o.Key)
		}
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><DeleteResult>%s</DeleteResult>`, errs.String())
	default:
		s3Error(w, http.StatusNotImplemented, "NotImplemented", "NotImplemented")
	}
}

func newAdminS3(t *testing.T, srv *httptest.Server, region string) *S3 {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", "env-key")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	st, err := NewS3(context.Background(), S3Config{
		Endpoint: srv.URL, PathStyle: true, Region: region, MaxRetries: -1,
		AccessKeyID: "AKIDSTATIC", SecretAccessKey: "static-secret",
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestCreateDeleteBucket: a bucket is created (with a LocationConstraint
// outside us-east-1 only), a taken name fails with ErrBucketExists and the
// server's code, a bucket with keys is not deleted, an empty one is, and a
// missing one fails with ErrNotFound. Every request is signed with the
// static credentials of S3Config, not the environment's.
func TestCreateDeleteBucket(t *testing.T) {
	ctx := context.Background()
	a := &adminServer{buckets: map[string]map[string]bool{}}
	srv := httptest.NewServer(a)
	defer srv.Close()

	for _, region := range []string{"us-east-1", "eu-west-1", "auto"} {
		st := newAdminS3(t, srv, region)
		name := "b-" + region
		if err := st.CreateBucket(ctx, name); err != nil {
			t.Fatalf("%s: create: %v", region, err)
		}
		err := st.CreateBucket(ctx, name)
		if !errors.Is(err, ErrBucketExists) || ErrorCode(err) != "BucketAlreadyOwnedByYou" {
			t.Errorf("%s: second create: %v, want ErrBucketExists (BucketAlreadyOwnedByYou)", region, err)
		}
	}
	a.mu.Lock()
	got := strings.Join(a.constraints, ",")
	a.mu.Unlock()
	if want := ",,eu-west-1,eu-west-1,,"; got != want {
		t.Errorf("location constraints %q, want %q", got, want)
	}

	st := newAdminS3(t, srv, "us-east-1")
	if err := st.CreateBucket(ctx, "someone-elses"); !errors.Is(err, ErrBucketExists) || ErrorCode(err) != "BucketAlreadyExists" {
		t.Errorf("create of a name taken by another account: %v", err)
	}
	a.mu.Lock()
	a.buckets["full"] = map[string]bool{"k": true}
	a.mu.Unlock()
	if err := st.DeleteBucket(ctx, "full"); err == nil || ErrorCode(err) != "BucketNotEmpty" {
		t.Errorf("delete of a bucket with keys: %v, want BucketNotEmpty", err)
	}
	if err := st.DeleteBucket(ctx, "b-us-east-1"); err != nil {
		t.Errorf("delete: %v", err)
	}
	if err := st.DeleteBucket(ctx, "b-us-east-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete of a missing bucket: %v, want ErrNotFound", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, k := range a.accessKeys {
		if k != "AKIDSTATIC" {
			t.Errorf("a request was signed with %q, want the static AKIDSTATIC", k)
		}
	}
	if len(a.accessKeys) == 0 {
		t.Error("no signed request seen")
	}
}

// TestDeleteKeys: 2,500 keys go in three DeleteObjects requests of at most
// 1,000; a key the server refuses is reported with its code and kind while
// the other keys are still deleted; a missing bucket is ErrNotFound.
func TestDeleteKeys(t *testing.T) {
	ctx := context.Background()
	a := &adminServer{buckets: map[string]map[string]bool{"b": {}}, locked: "k0042"}
	srv := httptest.NewServer(a)
	defer srv.Close()
	st := newAdminS3(t, srv, "us-east-1")
	var keys []string
	for i := range 2500 {
		k := fmt.Sprintf("k%04d", i)
		keys = append(keys, k)
		a.buckets["b"][k] = true
	}
	err := st.DeleteKeys(ctx, "b", keys)
	var se *Error
	if !errors.As(err, &se) || se.Key != "k0042" || se.Code != "AccessDenied" || !errors.Is(err, ErrAccessDenied) {
		t.Errorf("DeleteKeys: %v, want AccessDenied on k0042", err)
	}
	a.mu.Lock()
	left, calls := len(a.buckets["b"]), a.deleteCalls
	a.mu.Unlock()
	if left != 1 || calls != 3 {
		t.Errorf("%d keys left after %d requests, want 1 after 3", left, calls)
	}
	if err := st.DeleteKeys(ctx, "missing", keys[:1]); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteKeys in a missing bucket: %v", err)
	}
	if err := st.DeleteKeys(ctx, "b", nil); err != nil {
		t.Errorf("DeleteKeys of nothing: %v", err)
	}
}
