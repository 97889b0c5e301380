package integration

import (
	"go/build"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestPackageDependencies: dependencies between bucketfs's packages run
// one way, as the README's layout section draws them. A new import of one
// package by another must be added here, on purpose.
func TestPackageDependencies(t *testing.T) {
	const mod = "github.com/bucketfs/bucketfs/"
	allowed := map[string][]string{
		"store":        nil,
		"counters":     nil,
		"cache":        {"counters"},
		"prefetch":     {"cache", "counters", "store"},
		"write":        {"counters", "store"},
		"fs":           {"counters", "store", "write"},
		"csi":          {"store"},
		"cmd/bucketfs": {"cache", "counters", "csi", "fs", "prefetch", "store", "write"},
	}
	for pkg, ok := range allowed {
		p, err := build.ImportDir(filepath.Join("..", pkg), 0)
		if err != nil {
			t.Fatalf("%s: %v", pkg, err)
		}
		for _, imp := range p.Imports {
			if dep, ours := strings.CutPrefix(imp, mod); ours && !slices.Contains(ok, dep) {
				t.Errorf("%s imports %s; its allowed imports are %v", pkg, dep, ok)
			}
		}
	}
}
