// Command install installs the versitygw S3 server used by the tests and
// the demo, unless it is already there, and prints its path.
package main

import (
	"fmt"
	"os"

	"github.com/bucketfs/bucketfs/integration/harness"
)

func main() {
	p, err := harness.Versitygw()
	if err != nil {
		fmt.Fprintln(os.Stderr, "install:", err)
		os.Exit(1)
	}
	fmt.Println(p)
}
