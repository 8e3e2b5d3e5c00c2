# From open-policy-agent/gatekeeper-library, library/general/replicalimits/template.yaml (version 1.0.2, commit 5c441fb6),
# spec.targets[0].rego, unchanged. Licence: Apache-2.0, Copyright The Gatekeeper Authors.
package k8sreplicalimits

object_name = input.review.object.metadata.name
object_kind = input.review.kind.kind

violation[{"msg": msg}] {
    spec := input.review.object.spec
    not input_replica_limit(spec)
    msg := sprintf("The provided number of replicas is not allowed for %v: %v. Allowed ranges: %v", [object_kind, object_name, input.parameters])
}

input_replica_limit(spec) {
    provided := spec.replicas
    count(input.parameters.ranges) > 0
    range := input.parameters.ranges[_]
    value_within_range(range, provided)
}

value_within_range(range, value) {
    range.min_replicas <= value
    range.max_replicas >= value
}
