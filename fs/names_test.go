package fs

import (
	"strings"
	"testing"
)

// TestValidName checks which key components may become file names: not
// empty, ".", "..", longer than NAME_MAX bytes or holding NUL; everything
// else, including spaces, unicode and odd punctuation, is kept.
func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{name: "plain", in: "file.txt", want: true},
		{name: "empty (from a//b)", in: "", want: false},
		{name: "dot", in: ".", want: false},
		{name: "dot dot", in: "..", want: false},
		{name: "three dots", in: "...", want: true},
		{name: "leading dot", in: ".hidden", want: true},
		{name: "255 bytes", in: strings.Repeat("a", 255), want: true},
		{name: "256 bytes", in: strings.Repeat("a", 256), want: false},
		{name: "255 bytes of 2-byte runes, 1 of ASCII", in: strings.Repeat("é", 127) + "a", want: true},
		{name: "256 bytes of 2-byte runes", in: strings.Repeat("é", 128), want: false},
		{name: "NUL inside", in: "a\x00b", want: false},
		{name: "NUL alone", in: "\x00", want: false},
		{name: "unicode", in: "日本語 データ", want: true},
		{name: "emoji", in: "🎉", want: true},
		{name: "spaces", in: "  spaced out  ", want: true},
		{name: "single space", in: " ", want: true},
		{name: "newline and tab", in: "a\nb\tc", want: true},
		{name: "backslash", in: `a\b`, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := validName(tt.in); got != tt.want {
				t.Errorf("validName(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
