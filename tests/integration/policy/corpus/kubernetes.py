"""Kubernetes objects, cached inventories and long messages used by the Gatekeeper corpus cases."""

from typing import Any

LONG_EDIT = (
    "ClusterRole system:aggregate-to-edit should not allow endpoint edit permissions. For k8s version < 1.22, the "
    "Cluster Role should be annotated with rbac.authorization.kubernetes.io/autoupdate=false to prevent "
    "autoreconciliation back to default permissions for this role."
)
WILDCARD = (
    "Hostname '{}' is not allowed since it counts as a wildcard, which can be used to intercept traffic from other "
    "applications."
)
HPA: dict[str, Any] = {
    "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "h", "namespace": "ns"},
    "spec": {
        "minReplicas": 1,
        "maxReplicas": 2,
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"},
    },
}
PDB_DEPLOYMENT = {
    "kind": "Deployment",
    "metadata": {"name": "d", "namespace": "ns"},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "x", "tier": "web"}}},
}
PDB_INVENTORY = {
    "inventory": {
        "namespace": {
            "ns": {
                "policy/v1": {
                    "PodDisruptionBudget": {
                        "p": {
                            "metadata": {"name": "p"},
                            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "x"}}},
                        }
                    }
                }
            }
        }
    }
}
SERVICE_INVENTORY = {
    "inventory": {
        "namespace": {
            "ns2": {
                "v1": {
                    "Service": {
                        "b": {
                            "apiVersion": "v1",
                            "kind": "Service",
                            "metadata": {"name": "b", "namespace": "ns2"},
                            "spec": {"selector": {"app": "x"}},
                        }
                    }
                }
            }
        }
    }
}
INGRESS_INVENTORY = {
    "inventory": {
        "namespace": {
            "ns2": {
                "networking.k8s.io/v1": {
                    "Ingress": {
                        "b": {
                            "metadata": {"name": "b", "namespace": "ns2"},
                            "spec": {"rules": [{"host": "x.com"}]},
                        }
                    }
                }
            }
        }
    }
}
STORAGE_INVENTORY: dict[str, Any] = {
    "inventory": {"cluster": {"storage.k8s.io/v1": {"StorageClass": {"standard": {}}}}}
}
PVC = {
    "apiVersion": "v1",
    "kind": "PersistentVolumeClaim",
    "metadata": {"name": "c"},
    "spec": {"storageClassName": "slow"},
}
