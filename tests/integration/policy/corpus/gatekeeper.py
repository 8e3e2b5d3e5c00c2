"""Gatekeeper library templates (``gatekeeper/*.rego``, unchanged) with admission reviews and OPA's verdicts.

Each case gives a review in Gatekeeper's input shape (``input.review``, ``input.parameters``; ``data.inventory``
for the templates that read cached cluster objects) and the ``violation`` set OPA returns for it.
"""

from typing import Any

from tests.integration.policy.corpus import Case, gatekeeper_source
from tests.integration.policy.corpus.kubernetes import (
    HPA,
    INGRESS_INVENTORY,
    LONG_EDIT,
    PDB_DEPLOYMENT,
    PDB_INVENTORY,
    PVC,
    SERVICE_INVENTORY,
    STORAGE_INVENTORY,
    WILDCARD,
)


def _review(obj: dict[str, Any], kind: str = "Pod", group: str = "", **extra: Any) -> dict[str, Any]:
    return {"kind": {"kind": kind, "group": group, "version": "v1"}, "object": obj, **extra}


def _case(
    template: str,
    name: str,
    package: str,
    review: dict[str, Any],
    parameters: dict[str, Any],
    expected: list[Any],
    data: dict[str, Any] | None = None,
) -> Case:
    return Case(
        "gatekeeper",
        f"{template}/{name}",
        package,
        gatekeeper_source(template),
        "violation",
        {"review": review, "parameters": parameters},
        expected,
        data=data or {},
        as_set=True,
    )


def _pod(*containers: tuple[str, str], init: tuple[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": n, "image": i} for n, i in containers]}
    if init:
        spec["initContainers"] = [{"name": init[0], "image": init[1]}]
    return {"kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}, "spec": spec}


REPOS = '["gcr.io/", "quay.io/"]'

CASES = [
    _case(
        "allowedrepos",
        "container-and-init-container",
        "k8sallowedrepos",
        _review(_pod(("web", "docker.io/nginx"), ("ok", "gcr.io/x"), init=("init", "busybox"))),
        {"repos": ["gcr.io/", "quay.io/"]},
        [
            {
                "msg": f"container <web> has an invalid image repo <docker.io/nginx>, allowed repos are {REPOS}"
            },
            {"msg": f"initContainer <init> has an invalid image repo <busybox>, allowed repos are {REPOS}"},
        ],
    ),
    _case(
        "allowedrepos",
        "allowed",
        "k8sallowedrepos",
        _review(_pod(("ok", "quay.io/x"))),
        {"repos": ["gcr.io/", "quay.io/"]},
        [],
    ),
    _case(
        "allowedreposv2",
        "exact-and-prefix",
        "k8sallowedreposv2",
        _review(_pod(("a", "gcr.io/app:1"), ("b", "quay.io/x"), ("c", "gcr.io/app:2"))),
        {"allowedImages": ["gcr.io/app:1", "quay.io/*"]},
        [
            {
                "msg": 'container <c> has an invalid image <gcr.io/app:2>, allowed images are ["gcr.io/app:1", '
                '"quay.io/*"]'
            }
        ],
    ),
    _case(
        "block-endpoint-edit-default-role",
        "patch-endpoints",
        "k8sblockendpointeditdefaultrole",
        _review(
            {
                "metadata": {"name": "system:aggregate-to-edit"},
                "rules": [
                    {"resources": ["pods"], "verbs": ["create"]},
                    {"resources": ["endpoints"], "verbs": ["get", "patch"]},
                ],
            },
            kind="ClusterRole",
        ),
        {},
        [{"msg": LONG_EDIT}],
    ),
    _case(
        "block-endpoint-edit-default-role",
        "read-only",
        "k8sblockendpointeditdefaultrole",
        _review(
            {
                "metadata": {"name": "system:aggregate-to-edit"},
                "rules": [{"resources": ["endpoints"], "verbs": ["get"]}],
            },
            kind="ClusterRole",
        ),
        {},
        [],
    ),
    _case(
        "block-loadbalancer-services",
        "load-balancer",
        "k8sblockloadbalancer",
        _review({"spec": {"type": "LoadBalancer"}}, kind="Service"),
        {},
        [{"msg": "User is not allowed to create service of type LoadBalancer"}],
    ),
    _case(
        "block-nodeport-services",
        "cluster-ip",
        "k8sblocknodeport",
        _review({"spec": {"type": "ClusterIP"}}, kind="Service"),
        {},
        [],
    ),
    _case(
        "block-wildcard-ingress",
        "wildcard-and-missing-host",
        "K8sBlockWildcardIngress",
        _review(
            {"spec": {"rules": [{"host": "*.example.com"}, {"http": {}}, {"host": "a.example.com"}]}},
            kind="Ingress",
        ),
        {},
        [{"msg": WILDCARD.format("*.example.com")}, {"msg": WILDCARD.format("")}],
    ),
    _case(
        "disallowanonymous",
        "anonymous-subject",
        "k8sdisallowanonymous",
        _review(
            {
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "b"},
                "roleRef": {"name": "view"},
                "subjects": [{"name": "system:anonymous"}, {"name": "system:authenticated"}],
            },
            kind="ClusterRoleBinding",
        ),
        {},
        [{"msg": "system:anonymous is not allowed as a subject name in ClusterRoleBinding b"}],
    ),
    _case(
        "disallowanonymous",
        "authenticated-too",
        "k8sdisallowanonymous",
        _review(
            {
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "b"},
                "roleRef": {"name": "view"},
                "subjects": [{"name": "system:anonymous"}, {"name": "system:authenticated"}],
            },
            kind="ClusterRoleBinding",
        ),
        {"disallowAuthenticated": True},
        [
            {"msg": "system:anonymous is not allowed as a subject name in ClusterRoleBinding b"},
            {"msg": "system:authenticated is not allowed as a subject name in ClusterRoleBinding b"},
        ],
    ),
    _case(
        "disallowedrepos",
        "disallowed",
        "k8sdisallowedrepos",
        _review(_pod(("a", "docker.io/x"), ("b", "gcr.io/y"))),
        {"repos": ["docker.io/"]},
        [
            {
                "msg": 'container <a> has an invalid image repo <docker.io/x>, disallowed repos are ["docker.io/"]'
            }
        ],
    ),
    _case(
        "externalip",
        "forbidden-ip",
        "k8sexternalips",
        _review({"spec": {"externalIPs": ["1.1.1.1", "2.2.2.2"]}}, kind="Service"),
        {"allowedIPs": ["1.1.1.1"]},
        [{"msg": 'service has forbidden external IPs: {"2.2.2.2"}'}],
    ),
    _case(
        "horizontalpodautoscaler",
        "spread-and-missing-target",
        "k8shorizontalpodautoscaler",
        _review(HPA, kind="HorizontalPodAutoscaler"),
        {
            "ranges": [{"min_replicas": 1, "max_replicas": 6}],
            "minimumReplicaSpread": 2,
            "enforceScaleTargetRef": True,
        },
        [
            {
                "msg": "The HorizontalPodAutoscaler <h> is configured with minReplicas 1 and maxReplicas 2 which is a "
                "spread of 1 replica(s). The spread must be at least 2 replica(s)"
            },
            {
                "msg": "The HorizontalPodAutoscaler <h> has a scaleTargetRef of <Deployment/d> but it does not exist. "
                "The scaleTargetRef for the HorizontalPodAutoscaler must exist"
            },
        ],
    ),
    _case(
        "horizontalpodautoscaler",
        "target-exists",
        "k8shorizontalpodautoscaler",
        _review({**HPA, "spec": {**HPA["spec"], "maxReplicas": 4}}, kind="HorizontalPodAutoscaler"),
        {
            "ranges": [{"min_replicas": 1, "max_replicas": 6}],
            "minimumReplicaSpread": 2,
            "enforceScaleTargetRef": True,
        },
        [],
        data={"inventory": {"namespace": {"ns": {"apps/v1": {"Deployment": {"d": {"kind": "Deployment"}}}}}}},
    ),
    _case(
        "httpsonly",
        "no-tls",
        "k8shttpsonly",
        _review(
            {
                "kind": "Ingress",
                "apiVersion": "networking.k8s.io/v1",
                "metadata": {"name": "i", "annotations": {}},
                "spec": {},
            },
            kind="Ingress",
        ),
        {},
        [
            {
                "msg": "Ingress should be https. tls configuration and allow-http=false annotation are required for i"
            }
        ],
    ),
    _case(
        "httpsonly",
        "tls-optional-annotated",
        "k8shttpsonly",
        _review(
            {
                "kind": "Ingress",
                "apiVersion": "networking.k8s.io/v1",
                "metadata": {"name": "i", "annotations": {"kubernetes.io/ingress.allow-http": "false"}},
                "spec": {},
            },
            kind="Ingress",
        ),
        {"tlsOptional": True},
        [],
    ),
    _case(
        "noupdateserviceaccount",
        "unprivileged-change",
        "noupdateserviceaccount",
        _review(
            {"kind": "Pod", "spec": {"serviceAccountName": "b"}},
            operation="UPDATE",
            oldObject={"kind": "Pod", "spec": {"serviceAccountName": "a"}},
            userInfo={"username": "bob", "groups": ["dev"]},
        ),
        {"allowedGroups": ["admins"]},
        [{"msg": "user does not have permission to modify serviceAccountName"}],
    ),
    _case(
        "noupdateserviceaccount",
        "privileged-group",
        "noupdateserviceaccount",
        _review(
            {"kind": "Deployment", "spec": {"template": {"spec": {"serviceAccountName": "b"}}}},
            operation="UPDATE",
            oldObject={"kind": "Deployment", "spec": {"template": {"spec": {"serviceAccountName": "a"}}}},
            userInfo={"username": "bob", "groups": ["admins"]},
        ),
        {"allowedGroups": ["admins"]},
        [],
    ),
    _case(
        "poddisruptionbudget",
        "max-unavailable-zero",
        "k8spoddisruptionbudget",
        _review(
            {
                "kind": "PodDisruptionBudget",
                "metadata": {"name": "p", "namespace": "ns"},
                "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "x"}}},
            },
            kind="PodDisruptionBudget",
        ),
        {},
        [
            {
                "msg": "PodDisruptionBudget <p> has maxUnavailable of 0, only positive integers are allowed for "
                "maxUnavailable"
            }
        ],
    ),
    _case(
        "poddisruptionbudget",
        "min-available-vs-replicas",
        "k8spoddisruptionbudget",
        _review(PDB_DEPLOYMENT, kind="Deployment"),
        {},
        [
            {
                "msg": "Deployment <d> has 1 replica(s) but PodDisruptionBudget <p> has minAvailable of 1, "
                "PodDisruptionBudget count should always be lower than replica(s), and not used when replica(s) is "
                "set to 1"
            }
        ],
        data=PDB_INVENTORY,
    ),
    _case(
        "replicalimits",
        "too-many",
        "k8sreplicalimits",
        _review({"metadata": {"name": "d"}, "spec": {"replicas": 7}}, kind="Deployment"),
        {"ranges": [{"min_replicas": 2, "max_replicas": 5}]},
        [
            {
                "msg": "The provided number of replicas is not allowed for Deployment: d. Allowed ranges: "
                '{"ranges": [{"max_replicas": 5, "min_replicas": 2}]}'
            }
        ],
    ),
    _case(
        "replicalimits",
        "in-range",
        "k8sreplicalimits",
        _review({"metadata": {"name": "d"}, "spec": {"replicas": 3}}, kind="Deployment"),
        {"ranges": [{"min_replicas": 2, "max_replicas": 5}]},
        [],
    ),
    _case(
        "requiredannotations",
        "missing-and-bad-value",
        "k8srequiredannotations",
        _review({"metadata": {"annotations": {"owner": "Bob1"}}}),
        {"annotations": [{"key": "owner", "allowedRegex": "^[a-z]+$"}, {"key": "team", "allowedRegex": ""}]},
        [
            {"msg": 'you must provide annotation(s): {"team"}', "details": {"missing_annotations": ["team"]}},
            {"msg": "Annotation <owner: Bob1> does not satisfy allowed regex: ^[a-z]+$"},
        ],
    ),
    _case(
        "requiredlabels",
        "missing-label",
        "k8srequiredlabels",
        _review({"metadata": {"labels": {"x": "1"}}}),
        {"labels": [{"key": "app"}]},
        [{"msg": 'you must provide labels: {"app"}', "details": {"missing_labels": ["app"]}}],
    ),
    _case(
        "requiredlabels",
        "custom-message",
        "k8srequiredlabels",
        _review({"metadata": {"labels": {"app": "Web"}}}),
        {"labels": [{"key": "app", "allowedRegex": "^[a-z]+$"}], "message": "label app must be lower case"},
        [{"msg": "label app must be lower case"}],
    ),
    _case(
        "storageclass",
        "unknown-class",
        "k8sstorageclass",
        _review(PVC, kind="PersistentVolumeClaim"),
        {"includeStorageClassesInMessage": True},
        [{"msg": "pvc did not specify a valid storage class name <slow>. Must be one of [standard]"}],
        data=STORAGE_INVENTORY,
    ),
    _case(
        "uniqueingresshost",
        "conflict",
        "k8suniqueingresshost",
        _review(
            {"metadata": {"name": "a", "namespace": "ns1"}, "spec": {"rules": [{"host": "x.com"}]}},
            kind="Ingress",
            group="networking.k8s.io",
        ),
        {},
        [{"msg": "ingress host conflicts with an existing ingress <x.com>"}],
        data=INGRESS_INVENTORY,
    ),
    _case(
        "uniqueserviceselector",
        "same-selector",
        "k8suniqueserviceselector",
        _review({"spec": {"selector": {"app": "x"}}}, kind="Service", name="a", namespace="ns"),
        {},
        [{"msg": "same selector as service <b> in namespace <ns2>"}],
        data=SERVICE_INVENTORY,
    ),
    _case(
        "verifydeprecatedapi",
        "deprecated",
        "verifydeprecatedapi",
        _review({"apiVersion": "batch/v1beta1", "kind": "CronJob"}, kind="CronJob"),
        {
            "kvs": [{"deprecatedAPI": "batch/v1beta1", "kinds": ["CronJob"], "targetAPI": "batch/v1"}],
            "k8sVersion": "1.25",
        },
        [
            {
                "msg": "API CronJob for batch/v1beta1 is deprecated in Kubernetes version 1.25, please use batch/v1 "
                "instead"
            }
        ],
    ),
]
