// Command bucketfs mounts S3-compatible object storage as a filesystem.
//
// Lock order: the package has one mutex, warmFiles' mu (warm.go), which
// guards the warm command's tallies. report calls the progress bar's
// Describe under it, which takes the bar's own lock: mu -> the bar's lock,
// a leaf. The signal handler (signals.go) keeps its state in its one
// goroutine and takes no lock; uploadDrain (writes.go) has two sync.Once
// and an atomic, and its Close runs write.Manager.Close under its Once,
// taking none of ours; tierFiles (tier.go) tallies in one goroutine fed by
// a channel; csi.go, helper.go, mount.go, metrics.go, options.go,
// restore.go and sync.go hold no mutex.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	var err error
	if args := os.Args[1:]; isHelperCall(args) {
		err = runHelper(args) // run by mount(8): see helper.go
	} else {
		err = newRootCmd(runMount).Execute()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bucketfs: "+oneLine(err.Error()))
		os.Exit(1)
	}
}

// oneLine keeps an error message to a single line.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// newRootCmd builds the command tree. run performs a mount; tests inject a
// recorder to check flag parsing without mounting.
func newRootCmd(run func(*mountOptions) error) *cobra.Command {
	root := &cobra.Command{
		Use:           "bucketfs",
		Short:         "Mount S3-compatible object storage (Tigris, AWS S3, MinIO) as a filesystem",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%v (see '%s --help')", err, c.CommandPath())
	})
	root.AddCommand(newMountCmd(run), newRestoreCmd(), newWarmCmd(), newSyncCmd(), newTierCmd(), newCSICmd(runCSI), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(c *cobra.Command, _ []string) {
			fmt.Fprintln(c.OutOrStdout(), "bucketfs "+version)
		},
	})
	return root
}
