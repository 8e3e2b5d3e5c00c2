# An infrastructure-target (SIT) policy in the STACKL 0.5 style (Rego v0, as OPA 0.x ran it).
#
# Only container images from approved registries may be deployed on a target. Store it as the policy
# template `my_policy` and attach it to an environment, location or zone with its attributes:
#
#   policies:
#     my_policy: {registries: ["registry.example.com/"]}
#
# STACKL then evaluates the rule `infringement` once per chosen target; every message fails the placement.
# Try it first (from the repository root):
#
#   stackl policy eval -f examples/policies/my_policy.rego --rule infringement \
#     --input @examples/policies/input.json
package my_policy

infringement[{"msg": msg}] {
  inv := input.services[_].functional_requirements[fr][_]
  inv.image != ""
  not approved(inv.image)
  msg := sprintf("functional requirement %v uses image %v, which is not from an approved registry", [fr, inv.image])
}

approved(image) {
  prefix := input.parameters.registries[_]
  startswith(image, prefix)
}
