package ingress

import "fmt"

// Event reasons of the Problems Build reports. A Kubernetes shell emits each Problem as
// a Warning Event on the Ingress it names.
const (
	ReasonAnnotationIgnored     = "AnnotationIgnored"
	ReasonAnnotationInvalid     = "AnnotationInvalid"
	ReasonPathConflict          = "PathConflict"
	ReasonInvalidRule           = "InvalidRule"
	ReasonResourceBackend       = "ResourceBackendRefused"
	ReasonDefaultBackendNotUsed = "DefaultBackendNotUsed"
	ReasonCanaryIgnored         = "CanaryIgnored"
	ReasonSecretMissing         = "SecretMissing"
	ReasonSecretInvalid         = "SecretInvalid"
	ReasonCertificateMismatch   = "CertificateMismatch"
	ReasonTLSConflict           = "TLSConflict"
)

// Problem is something in an Ingress that ironlb could not serve as written. The rest
// of the Ingress, and every other Ingress, is served.
type Problem struct {
	// Namespace and Name are the Ingress the Problem is about.
	Namespace, Name string
	// Reason is one of the Reason* constants (a Kubernetes Event reason).
	Reason  string
	Message string
}

// String is "namespace/name: Reason: message".
func (p Problem) String() string {
	return fmt.Sprintf("%s/%s: %s: %s", p.Namespace, p.Name, p.Reason, p.Message)
}
