"""STACKL 0.5 ``/stack_infrastructure_templates`` (api.md §A.6); capabilities are computed on every read."""

from stackl.api.legacy.common import Group, document_router

router = document_router(
    Group(
        doc_type="stack_infrastructure_template",
        prefix="/stack_infrastructure_templates",
        tag="stack_infrastructure_templates",
        list_op="get_stack_infrastructure_templates",
        get_op="get_stack_infrastructure_template_by_name",
        post_op="post_stack_infrastructure_template",
        put_op="put_stack_infrastructure_template",
        delete_op="delete_stack_infrastructure_template",
        not_found="SIT not found",
        deleted=lambda _name: "Deleted sit",
    )
)
