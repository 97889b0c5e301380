package csi

import (
	"fmt"
	"sort"
	"strings"
)

// flag is one bucketfs mount flag: --Name, or --Name=Value when HasValue.
type flag struct {
	Name     string
	Value    string
	HasValue bool
}

// arg renders the flag for a `bucketfs mount` command line.
func (f flag) arg() string {
	if f.HasValue {
		return "--" + f.Name + "=" + f.Value
	}
	return "--" + f.Name
}

// option renders the flag as a mount helper option (name=value).
func (f flag) option() string {
	if f.HasValue {
		return f.Name + "=" + f.Value
	}
	return f.Name
}

// flagKind says whether a flag takes a value.
type flagKind int

const (
	boolFlag     flagKind = iota // --name, or --name=true/false
	valueFlag                    // --name=value
	optValueFlag                 // --name or --name=value (auto-restore)
)

// allowedFlags are the bucketfs mount flags a volume's mountOptions (and a
// PersistentVolume's or StorageClass's mountOptions, which reach the
// driver as the capability's mount flags) may set. What they may not:
//   - endpoint, region, path-style: the volume's attributes say these;
//   - profile: the node's AWS files are not the volume's credentials;
//   - log-file, metrics-addr, cpu-profile, debug-fuse: the driver decides
//     where a daemon logs, and whether it opens ports on the node.
//
// cache-dir is allowed: the driver gives each volume a directory of its
// own under it (see cacheDir in node.go).
var allowedFlags = map[string]flagKind{
	"uid":                    valueFlag,
	"gid":                    valueFlag,
	"file-mode":              valueFlag,
	"dir-mode":               valueFlag,
	"allow-other":            boolFlag,
	"metadata-ttl":           valueFlag,
	"negative-metadata-ttl":  valueFlag,
	"cache-memory":           valueFlag,
	"block-size":             valueFlag,
	"max-readahead":          valueFlag,
	"max-parallel-gets":      valueFlag,
	"cache-dir":              valueFlag,
	"cache-size":             valueFlag,
	"cache-min-free":         valueFlag,
	"max-retries":            valueFlag,
	"request-timeout":        valueFlag,
	"log-slow-reads":         valueFlag,
	"read-only":              boolFlag,
	"write-back":             boolFlag,
	"storage-class":          valueFlag,
	"write-part-size":        valueFlag,
	"max-uploads":            valueFlag,
	"unmount-wait":           valueFlag,
	"tigris-rename":          valueFlag,
	"rename-dir-limit":       valueFlag,
	"auto-restore":           optValueFlag,
	"restore-check-interval": valueFlag,
	"restore-check-rate":     valueFlag,
	"startup-timeout":        valueFlag,
	"log-level":              valueFlag,
	"log-format":             valueFlag,
}

// mountOnly are options of mount(8) that Kubernetes users put in a
// PersistentVolume's mountOptions out of habit: taken and ignored, but for
// ro, which is read-only.
var mountOnly = map[string]bool{
	"rw": true, "defaults": true, "noatime": true, "relatime": true, "nodev": true,
	"nosuid": true, "noexec": true, "_netdev": true,
}

// parseMountOptions reads a comma list of mount flags without their
// leading dashes ("cache-memory=256MiB,uid=1000,write-back") and checks
// each name against allowedFlags. Underscores read as hyphens and a
// leading "--" is accepted. A flag given twice keeps its last value, as
// on a command line.
func parseMountOptions(list ...string) ([]flag, error) {
	byName := map[string]flag{}
	for _, l := range list {
		for _, o := range strings.Split(l, ",") {
			o = strings.TrimSpace(o)
			if o == "" {
				continue
			}
			name, val, hasVal := strings.Cut(o, "=")
			name = strings.ReplaceAll(strings.TrimPrefix(strings.TrimSpace(name), "--"), "_", "-")
			if name == "ro" && !hasVal {
				name = "read-only"
			} else if mountOnly[name] && !hasVal {
				continue
			}
			kind, ok := allowedFlags[name]
			if !ok {
				return nil, fmt.Errorf("mount option %q is not allowed (allowed: %s)", name, strings.Join(allowedNames(), ", "))
			}
			if strings.ContainsAny(val, "\x00\n\r") {
				return nil, fmt.Errorf("mount option %q: the value holds a control character", name)
			}
			switch kind {
			case boolFlag:
				if hasVal {
					b, err := parseBool(name, val)
					if err != nil || b == "" {
						return nil, fmt.Errorf("mount option %s: %q is not true or false", name, val)
					}
					if b == "false" {
						delete(byName, name)
						continue
					}
				}
				byName[name] = flag{Name: name}
			case valueFlag:
				if !hasVal || strings.TrimSpace(val) == "" {
					return nil, fmt.Errorf("mount option %s needs a value (%s=...)", name, name)
				}
				byName[name] = flag{Name: name, Value: strings.TrimSpace(val), HasValue: true}
			case optValueFlag:
				byName[name] = flag{Name: name, Value: strings.TrimSpace(val), HasValue: hasVal}
			}
		}
	}
	flags := make([]flag, 0, len(byName))
	for _, f := range byName {
		flags = append(flags, f)
	}
	sort.Slice(flags, func(i, j int) bool { return flags[i].Name < flags[j].Name })
	return flags, nil
}

// formatMountOptions is the canonical text of flags, as parseMountOptions
// reads it.
func formatMountOptions(flags []flag) string {
	s := make([]string, len(flags))
	for i, f := range flags {
		s[i] = f.option()
	}
	return strings.Join(s, ",")
}

func allowedNames() []string {
	names := make([]string, 0, len(allowedFlags))
	for n := range allowedFlags {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// hasFlag reports whether flags hold name.
func hasFlag(flags []flag, name string) bool {
	for _, f := range flags {
		if f.Name == name {
			return true
		}
	}
	return false
}

// flagValue returns the value of flag name, if set.
func flagValue(flags []flag, name string) (string, bool) {
	for _, f := range flags {
		if f.Name == name {
			return f.Value, true
		}
	}
	return "", false
}

// setFlag sets (or replaces) flag f.
func setFlag(flags []flag, f flag) []flag {
	for i := range flags {
		if flags[i].Name == f.Name {
			flags[i] = f
			return flags
		}
	}
	return append(flags, f)
}
