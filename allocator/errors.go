package allocator

import "fmt"

// Reasons of a refused allocation. The controller uses them verbatim as Kubernetes
// Event reasons.
const (
	// ReasonInvalidRequest: the Service's annotations or spec do not form a valid
	// request (unparsable or conflicting addresses, pools or sharing keys, or
	// addresses inconsistent with spec.ipFamilyPolicy).
	ReasonInvalidRequest = "InvalidRequest"
	// ReasonNoPools: there is no pool at all, or none this Service may use.
	ReasonNoPools = "NoPools"
	// ReasonPoolNotFound: the requested pool does not exist.
	ReasonPoolNotFound = "PoolNotFound"
	// ReasonPoolNotAllowed: the requested pool's namespaces or selectors exclude
	// the Service.
	ReasonPoolNotAllowed = "PoolNotAllowed"
	// ReasonPoolExhausted: no usable pool has a free address of a needed family.
	ReasonPoolExhausted = "PoolExhausted"
	// ReasonIPOutsidePools: a requested address is in no pool the Service may use
	// (or not in the requested pool).
	ReasonIPOutsidePools = "IPOutsidePools"
	// ReasonIPInUse: a requested address is held by another Service that cannot
	// share it with this one.
	ReasonIPInUse = "IPInUse"
	// ReasonFamilyUnavailable: the pool cannot supply a needed address family, for
	// example RequireDualStack from a pool with IPv4 addresses only.
	ReasonFamilyUnavailable = "FamilyUnavailable"
	// ReasonIPFamilyMismatch: a requested address is of a family the Service
	// does not have in spec.ipFamilies, so nothing would forward it.
	ReasonIPFamilyMismatch = "IPFamilyMismatch"
)

// Error is a refused allocation. Reason is one of the Reason constants; Message is
// a sentence naming the Service, the address or pool, and why.
type Error struct {
	// Reason is a machine-readable cause, usable as a Kubernetes Event reason.
	Reason string
	// Message is a human-readable sentence.
	Message string
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

// Is reports whether target is an *Error with the same Reason, so that
// errors.Is(err, &allocator.Error{Reason: allocator.ReasonIPInUse}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Reason == e.Reason
}

func newError(reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Message: fmt.Sprintf(format, args...)}
}
