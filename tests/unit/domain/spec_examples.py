"""The example documents of the spec (documents.md, lifecycle.md), copied verbatim for the tests."""

# --- documents.md, copied verbatim --------------------------------------------------------------------------

DOCUMENTS_INFRASTRUCTURE = """\
name: production
type: environment
category: configs
description: Production estate
cloud_provider: generic
params: {dns_domain: prod.example.com}
secrets: {vcenter_password: change-me}     # read back as "********"
resources: {memory: 512GiB, cpu: 128}
tags: {environment: production}
packages: [vm, nginx, postgres]
policies:
  allowed_registries: {prefixes: ["registry.example.com/"]}
---
name: brussels
type: location
category: configs
params: {datacenter: bru1}
agent: bru-agent
---
name: dmz
type: zone
category: configs
cloud_provider: vmw
params: {network: dmz-vlan-20}
resources: {memory: 64GiB, cpu: 16}
tags: {network: dmz}
"""

DOCUMENTS_FUNCTIONAL_REQUIREMENT = """\
name: vm
type: functional_requirement
category: configs
description: A virtual machine
params: {vm_size: small}
invocation:
  generic:
    tool: shell
    command: ./create-vm.sh
    working_directory: vm
    timeout: 900
  vmw:
    tool: terraform
    image: registry.example.com/automation/vsphere-vm:1.4
    timeout: 1800
    retries: 1
outputs: {ip_address: ip_address}
"""

DOCUMENTS_SERVICE = """\
name: webserver
type: service
category: items
functional_requirements: [vm, nginx]
params: {http_port: 8080}
resource_requirements: {memory: 2GB, cpu: 500m}
service_policies:
  - {name: skip_on_provider, inputs: {provider: aws}}
"""

DOCUMENTS_STACK_APPLICATION_TEMPLATE = """\
name: web_shop
type: stack_application_template
category: configs
services:
  - {name: db, service: database}
  - {name: web, service: webserver}
policies:
  has_params:
    - {service: web, params: [dns_domain]}
stages:
  - {name: data, services: [db]}
  - {name: frontend, services: [web]}
"""

DOCUMENTS_STACK_INFRASTRUCTURE_TEMPLATE = """\
name: main
type: stack_infrastructure_template
category: configs
infrastructure_targets:
  - {environment: production, location: brussels, zone: dmz}
  - {environment: production, location: brussels, zone: internal}
"""

DOCUMENTS_POLICY_TEMPLATE = """\
name: allowed_registries
type: policy_template
category: configs
description: Only images from approved registries
inputs: [prefixes]
policy: |
  package allowed_registries

  infringement[{"msg": msg}] {
    inv := input.services[_].functional_requirements[fr][_]
    inv.image != ""
    not approved(inv.image)
    msg := sprintf("image %v of %v is not from an approved registry", [inv.image, fr])
  }

  approved(image) { startswith(image, input.parameters.prefixes[_]) }
"""

DOCUMENTS_STACK_INSTANCE = """\
name: shop
type: stack_instance
category: items
stack_infrastructure_template: main
stack_application_template: web_shop
instance_params: {dns_domain: shop.example.com}
service_params: {web: {http_port: 8443}}
instance_secrets: {api_key: "********"}
service_secrets: {}
instance_outputs: {db_endpoint: "10.0.20.7:5432"}
services:
  web:
    - infrastructure_target: production.brussels.dmz
      service: webserver
      agent: bru-agent
      cloud_provider: vmw
      provisioning_parameters: {dns_domain: shop.example.com, datacenter: bru1, network: dmz-vlan-20,
                                vm_size: small, http_port: 8443, db_endpoint: "10.0.20.7:5432"}
      secrets: {vcenter_password: "********"}
      hosts: [web01.prod.example.com]
      resources: {memory: 2GB, cpu: 500m}
      tags: {environment: production, network: dmz}
      opa_outputs: {}
      outputs: {ip_address: 10.0.10.5}
groups: {}
status:
  - {service: web, functional_requirement: vm, infrastructure_target: production.brussels.dmz,
     status: READY, error_message: "", replica: 0, action: create, task_id: 01JNM3PZ7XQ4V8K2D5R9T6W1YB,
     attempt: 1, started_at: "2025-05-01T10:15:31.002Z", finished_at: "2025-05-01T10:16:40.517Z"}
  - {service: web, functional_requirement: nginx, infrastructure_target: production.brussels.dmz,
     status: FAILED, error_message: "timed out after 900 s", replica: 0, action: create, attempt: 1}
stages: [{name: data, services: [db]}, {name: frontend, services: [web]}]
deleted: false
tags: {environment: production}
state: FAILED
task: {id: 01JNM3PZ7XQ4V8K2D5R9T6W1YB, kind: create, state: failed}
placement: {evaluated_at: "2025-05-01T10:15:30.870Z", services: {web: {service: webserver, replicas: 1,
            targets: [production.brussels.dmz], candidates: {}}}}    # abridged, see lifecycle.md §3.10
metadata: {revision: 14, created_at: "2025-05-01T10:15:30.901Z", created_by: alice,
           updated_at: "2025-05-01T10:31:40.530Z", updated_by: "agent:bru-agent"}
"""

DOCUMENTS_SNAPSHOT = """\
name: stack_application_template_web_shop_2025-05-01_10h02m11s
type: snapshot
category: history
description: before adding the cache service
snapshot:
  name: web_shop
  type: stack_application_template
  category: configs
  description: ""
  services: [{name: db, service: database}, {name: web, service: webserver}]
  policies: {}
  stages: []
source: {type: stack_application_template, name: web_shop, revision: 2}
metadata: {revision: 1, created_at: "2025-05-01T10:02:11.345Z", created_by: alice,
           updated_at: "2025-05-01T10:02:11.345Z", updated_by: alice}
"""

# --- lifecycle.md §1.2 and §6, copied verbatim --------------------------------------------------------------

LIFECYCLE_TARGET_DOCUMENTS = """\
{name: production, type: environment, agent: "", cloud_provider: "",
 params: {domain: example.com, log_level: info, ntp: {servers: [ntp1.example.com]}}, secrets: {registry_token: dG9rZW4=},
 tags: {environment: prod, tier: gold}, resources: {cpu: 64, memory: 256GiB, disk: 10TB},
 policies: {allowedrepositories: {repositories: [registry.example.com]}}, packages: [postgres_vm, nginx]}
---
{name: brussels, type: location, agent: bru-agent, cloud_provider: vmw,
 params: {dns_servers: [10.0.0.2], ntp: {servers: [ntp.bru.lan]}}, tags: {region: eu-west},
 resources: {memory: 128GiB}, packages: [haproxy]}
---
{name: zone-a, type: zone, params: {vlan: 120, log_level: debug}, tags: {tier: silver}, resources: {cpu: 32},
 policies: {allowedrepositories: {repositories: [registry.example.com, reg.bru.lan]}}}
"""  # noqa: E501 - verbatim from the spec

LIFECYCLE_CAPABILITY = """\
# infrastructure_capabilities["production.brussels.zone-a"]
provisioning_parameters:
  domain: example.com
  log_level: debug                  # zone beats environment
  ntp: {servers: [ntp.bru.lan]}     # shallow: the location's dict replaces the environment's whole
  dns_servers: [10.0.0.2]
  vlan: 120
secrets: {registry_token: "********"}
tags: {environment: prod, tier: silver, region: eu-west}
resources: {cpu: 32, memory: 128GiB, disk: 10TB}
policies: {allowedrepositories: {repositories: [registry.example.com, reg.bru.lan]}}   # the zone's dict, whole
packages: [postgres_vm, nginx, haproxy]
agent: bru-agent                    # zone has none -> location
cloud_provider: vmw                 # zone has none -> location
"""

LIFECYCLE_EXAMPLE_DOCUMENTS = """\
{name: postgres_vm, type: functional_requirement, params: {vm_size: medium},
 invocation: {generic: {tool: terraform, image: "registry.example.com/stackl/pg-vm:1.4", working_directory: pg-vm}},
 outputs: {db_host: db_host.value, db_port: db_port.value}}
---
{name: nginx, type: functional_requirement,
 invocation: {generic: {tool: ansible, image: "registry.example.com/stackl/nginx:2.0", working_directory: nginx,
                        ansible_role: nginx, connection: local, gather_facts: false}}}
---
{name: postgres, type: service, functional_requirements: [postgres_vm], params: {pg_version: "15"},
 resource_requirements: {cpu: "2", memory: 16GiB}, secrets: {db_password: c3VwZXJzZWNyZXQ=}}
---
{name: nginx, type: service, functional_requirements: [nginx], params: {listen_port: 8080},
 resource_requirements: {cpu: 500m, memory: 512MiB}}
---
{name: shop, type: stack_application_template, services: [{name: db, service: postgres}, {name: web, service: nginx}]}
---
{name: prod-bru, type: stack_infrastructure_template, infrastructure_targets: [
  {environment: production, location: brussels, zone: zone-a}, {environment: production, location: brussels, zone: zone-b}]}
"""  # noqa: E501 - verbatim from the spec

LIFECYCLE_STACK_INSTANCE = """\
{
  "name": "shop-prod", "type": "stack_instance", "category": "items",
  "stack_infrastructure_template": "prod-bru", "stack_application_template": "shop",
  "instance_params": {"owner": "team-a"}, "service_params": {"web": {"listen_port": 80}},
  "instance_secrets": {}, "service_secrets": {},
  "instance_outputs": {"db_host": "10.20.0.15", "db_port": 5432, "web_url": "http://10.20.0.16:80"},
  "services": {
    "db": [{"infrastructure_target": "production.brussels.zone-a", "service": "postgres", "agent": "bru-agent",
            "cloud_provider": "vmw", "hosts": [], "opa_outputs": {}, "resources": {"cpu": "2", "memory": "16GiB"},
            "tags": {"environment": "prod", "tier": "silver", "region": "eu-west"},
            "outputs": {"db_host": "10.20.0.15", "db_port": 5432},
            "secrets": {"registry_token": "********", "db_password": "********"},
            "provisioning_parameters": {"domain": "example.com", "log_level": "debug", "ntp": {"servers": ["ntp.bru.lan"]},
              "dns_servers": ["10.0.0.2"], "vlan": 120, "vm_size": "medium", "pg_version": "15", "owner": "team-a",
              "db_host": "10.20.0.15", "db_port": 5432, "web_url": "http://10.20.0.16:80"}}],
    "web": [{"infrastructure_target": "production.brussels.zone-a", "service": "nginx", "agent": "bru-agent",
             "cloud_provider": "vmw", "hosts": [], "opa_outputs": {}, "resources": {"cpu": "500m", "memory": "512MiB"},
             "tags": {"environment": "prod", "tier": "silver", "region": "eu-west"},
             "outputs": {"web_url": "http://10.20.0.16:80"}, "secrets": {"registry_token": "********"},
             "provisioning_parameters": {"domain": "example.com", "log_level": "debug", "ntp": {"servers": ["ntp.bru.lan"]},
               "dns_servers": ["10.0.0.2"], "vlan": 120, "listen_port": 80, "owner": "team-a",
               "db_host": "10.20.0.15", "db_port": 5432, "web_url": "http://10.20.0.16:80"}}]
  },
  "groups": {}, "stages": [], "deleted": false, "tags": {},
  "status": [
    {"functional_requirement": "postgres_vm", "infrastructure_target": "production.brussels.zone-a", "service": "db",
     "status": "READY", "error_message": "", "replica": 0, "action": "create", "task_id": "01JNM3PZ7XQ4V8K2D5R9T6W1YB",
     "job_id": "01JNM3Q0ABX7M2K9C4D8F6G3HS", "attempt": 1, "started_at": "2025-03-03T10:00:01Z",
     "finished_at": "2025-03-03T10:00:38Z", "input_hash": "sha256:5f1c0e…"},
    {"functional_requirement": "nginx", "infrastructure_target": "production.brussels.zone-a", "service": "web",
     "status": "READY", "error_message": "", "replica": 0, "action": "create", "task_id": "01JNM3PZ7XQ4V8K2D5R9T6W1YB",
     "job_id": "01JNM3R7CDY5N1P8E2F4G6H9JK", "attempt": 1, "started_at": "2025-03-03T10:00:39Z",
     "finished_at": "2025-03-03T10:01:05Z", "input_hash": "sha256:9a07d2…"}
  ],
  "state": "READY", "task": {"id": "01JNM3PZ7XQ4V8K2D5R9T6W1YB", "kind": "create", "state": "succeeded"},
  "placement": {"evaluated_at": "2025-03-03T10:00:00Z", "services": {"…": "as in §3.10"}},
  "metadata": {"revision": 3, "created_at": "2025-03-03T10:00:00.012Z", "created_by": "alice",
               "updated_at": "2025-03-03T10:01:05.340Z", "updated_by": "agent:bru-agent"}
}
"""  # noqa: E501 - verbatim from the spec
