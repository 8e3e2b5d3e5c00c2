"""STACKL 0.5 ``/stack_application_templates`` (api.md §A.5)."""

from stackl.api.legacy.common import Group, document_router

router = document_router(
    Group(
        doc_type="stack_application_template",
        prefix="/stack_application_templates",
        tag="stack_application_templates",
        list_op="get_stack_application_templates",
        get_op="get_stack_application_template_by_name",
        post_op="post_stack_application_template",
        put_op="put_stack_application_template",
        delete_op="delete_stack_application_template",
        not_found="SAT not found",
        deleted=lambda _name: "Deleted SAT",
    )
)
