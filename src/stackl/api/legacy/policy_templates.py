"""STACKL 0.5 ``/policy_templates`` (api.md §A.7); POST is new (0.5 had PUT only)."""

from stackl.api.legacy.common import Group, document_router

router = document_router(
    Group(
        doc_type="policy_template",
        prefix="/policy_templates",
        tag="policy_templates",
        list_op="get_policy_templates",
        get_op="get_policy_template_by_name",
        post_op="post_policy_template",
        put_op="put_policy_template",
        delete_op="delete_policy_template",
        not_found="Policy template not found",
        deleted=lambda _name: "deleted policy template",
        get_param="policy_name",
    )
)
