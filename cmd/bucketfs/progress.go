package main

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// progressOut returns w when it is a terminal, else io.Discard: a bar
// redrawn into a log file or a pipe is only noise there, and the summary
// line on stdout says what happened.
func progressOut(w io.Writer) io.Writer {
	if f, ok := w.(*os.File); ok {
		if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			return w
		}
	}
	return io.Discard
}
