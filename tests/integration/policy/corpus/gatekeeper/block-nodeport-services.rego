# From open-policy-agent/gatekeeper-library, library/general/block-nodeport-services/template.yaml (version 1.0.0, commit 5c441fb6),
# spec.targets[0].rego, unchanged. Licence: Apache-2.0, Copyright The Gatekeeper Authors.
package k8sblocknodeport

violation[{"msg": msg}] {
  input.review.kind.kind == "Service"
  input.review.object.spec.type == "NodePort"
  msg := "User is not allowed to create service of type NodePort"
}
