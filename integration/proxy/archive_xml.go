package proxy

// XML text helpers of the archive emulation. Listings are edited as text,
// not decoded and encoded again, so whatever the proxy does not rewrite
// stays as the server wrote it; error bodies are written as text too.

import (
	"encoding/xml"
	"html"
	"strings"
)

func indexFrom(s, sub string, from int) int {
	if from > len(s) {
		return -1
	}
	i := strings.Index(s[from:], sub)
	if i < 0 {
		return -1
	}
	return from + i
}

// elementText returns the raw text of the first <name>…</name> in s.
func elementText(s, name string) string {
	open, closing := "<"+name+">", "</"+name+">"
	i := strings.Index(s, open)
	if i < 0 {
		return ""
	}
	i += len(open)
	j := strings.Index(s[i:], closing)
	if j < 0 {
		return ""
	}
	return s[i : i+j]
}

// setElement sets the content of <name> in the element block (whose last
// tag is its closing tag), adding the element at its end when missing.
func setElement(block, name, content string) string {
	open, closing := "<"+name+">", "</"+name+">"
	if i := strings.Index(block, open); i >= 0 {
		if j := strings.Index(block[i:], closing); j >= 0 {
			return block[:i+len(open)] + content + block[i+j:]
		}
	}
	k := strings.LastIndex(block, "</")
	return block[:k] + open + content + closing + block[k:]
}

// textEscaper escapes XML text minimally, keeping quotes as they are (AWS
// writes "object's" literally).
var textEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

func xmlEscape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

func xmlUnescape(s string) string {
	if !strings.Contains(s, "&") {
		return s
	}
	var v string
	if err := xml.Unmarshal([]byte("<x>"+s+"</x>"), &v); err != nil {
		return html.UnescapeString(s)
	}
	return v
}
