# From open-policy-agent/gatekeeper-library, library/general/block-wildcard-ingress/template.yaml (version 1.0.1, commit 5c441fb6),
# spec.targets[0].rego, unchanged. Licence: Apache-2.0, Copyright The Gatekeeper Authors.
package K8sBlockWildcardIngress

contains_wildcard(hostname) = true {
  hostname == ""
}

contains_wildcard(hostname) = true {
  contains(hostname, "*")
}

violation[{"msg": msg}] {
  input.review.kind.kind == "Ingress"
  # object.get is required to detect omitted host fields
  hostname := object.get(input.review.object.spec.rules[_], "host", "")
  contains_wildcard(hostname)
  msg := sprintf("Hostname '%v' is not allowed since it counts as a wildcard, which can be used to intercept traffic from other applications.", [hostname])
}
