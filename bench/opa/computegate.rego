# The closest Rego to ComputeGate's decision on a pod CREATE, for bench/https.py (served by
# `opa run --server` as the default decision, so POST / takes the AdmissionReview as input).
# What it checks, as the engine does: the namespace's tenant, whether the tenant's jurisdiction
# needs a license, the accelerators asked for (the larger of request and limit per container),
# the model from the nodeSelector's product label, and a license of the tenant that is not
# revoked, valid now, covers the model and has headroom (used TPP + this pod's TPP <= maxTPP).
# What it leaves out: init and sidecar containers, node affinity, DRA claims, MIG profiles,
# bandwidth controls, Audit mode, the license's choice order and the reasons of a denial.
package computegate

req := input.request

pod := req.object

cg := data.state

ask(c, resource) := max([
	to_number(object.get(c, ["resources", "requests", resource], 0)),
	to_number(object.get(c, ["resources", "limits", resource], 0)),
])

gpus := sum([ask(c, resource) | some c in pod.spec.containers; some resource, _ in cg.resources])

product := cg.products[object.get(pod, ["spec", "nodeSelector", "nvidia.com/gpu.product"], "")]

tenant_name := cg.namespaces[req.namespace]

tenant := cg.tenants[tenant_name]

tpp := gpus * product.tpp

usable contains name if {
	some name in tenant.licenses
	lic := cg.licenses[name]
	not lic.revoked
	now := time.now_ns()
	lic.validFromNs <= now
	now < lic.validUntilNs
	lic.accelerators[product.model]
	lic.usedTPP + tpp <= lic.maxTPP
}

default allowed := false

allowed if gpus == 0

allowed if {
	gpus > 0
	not cg.requireLicense[tenant.jurisdiction]
}

allowed if {
	gpus > 0
	count(usable) > 0
}

default message := "[LicenseRequired] no valid license of the tenant covers this request"

message := "[NoTenant] the namespace belongs to no tenant" if not tenant_name

status := {"code": 403, "reason": "Forbidden", "message": message}

response := {
	"apiVersion": "admission.k8s.io/v1",
	"kind": "AdmissionReview",
	"response": {"uid": req.uid, "allowed": true},
} if allowed

response := {
	"apiVersion": "admission.k8s.io/v1",
	"kind": "AdmissionReview",
	"response": {"uid": req.uid, "allowed": false, "status": status},
} if not allowed
