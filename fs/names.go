package fs

import "strings"

// maxNameLen is the longest file name Linux accepts (NAME_MAX).
const maxNameLen = 255

// validName reports whether one key component can be a file name. Empty
// components (from "a//b"), "." and "..", names over NAME_MAX bytes and names
// holding NUL are skipped so nothing resolves outside the mount.
func validName(s string) bool {
	return s != "" && s != "." && s != ".." && len(s) <= maxNameLen && !strings.ContainsRune(s, 0)
}
