package ingress

import (
	"regexp"
	"strings"
)

// expandTarget builds the rewritten path from an nginx rewrite replacement: $0..$9 are
// capture groups of m (indexes into src as returned by FindStringSubmatchIndex); a
// group that did not take part is empty; any other "$" is literal.
func expandTarget(target, src string, m []int) string {
	var b strings.Builder
	for i := 0; i < len(target); i++ {
		c := target[i]
		if c == '$' && i+1 < len(target) && target[i+1] >= '0' && target[i+1] <= '9' {
			g := int(target[i+1] - '0')
			if 2*g+1 < len(m) && m[2*g] >= 0 {
				b.WriteString(src[m[2*g]:m[2*g+1]])
			}
			i++
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// rewrite applies an ingress-nginx rewrite-target to a request: re (the path, compiled
// case-insensitively and unanchored, as nginx's rewrite directive uses it) is matched
// against path; on a match the whole path is replaced by the expanded target. A "?" in
// the result starts a new query, to which the original query is appended after "&", as
// nginx does. ok is false when re does not match (the request goes unchanged).
func rewrite(re *regexp.Regexp, target, path, query string) (newPath, newQuery string, ok bool) {
	m := re.FindStringSubmatchIndex(path)
	if m == nil {
		return path, query, false
	}
	out := expandTarget(target, path, m)
	p, q, hasQuery := strings.Cut(out, "?")
	if !hasQuery {
		return p, query, true
	}
	if query != "" {
		if q != "" {
			q += "&"
		}
		q += query
	}
	return p, q, true
}
