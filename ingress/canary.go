package ingress

import "net/http"

// Choose reports whether r goes to the canary backend. roll(n) must return a uniformly
// distributed integer in [0, n); it is called only when the weight decides.
func (c *CanaryPolicy) Choose(r *http.Request, roll func(n int) int) bool {
	if c.Header != "" {
		if v := r.Header.Get(c.Header); v != "" {
			if c.HeaderValue != "" {
				if v == c.HeaderValue {
					return true
				}
			} else if v == "always" {
				return true
			} else if v == "never" {
				return false
			}
		}
	}
	if c.Cookie != "" {
		if ck, err := r.Cookie(c.Cookie); err == nil {
			switch ck.Value {
			case "always":
				return true
			case "never":
				return false
			}
		}
	}
	switch {
	case c.Weight <= 0:
		return false
	case c.Weight >= c.WeightTotal:
		return true
	}
	return roll(c.WeightTotal) < c.Weight
}
