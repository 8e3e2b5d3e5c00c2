"""STACKL 0.5 ``/functional_requirements`` (api.md §A.3)."""

from stackl.api.legacy.common import Group, document_router

router = document_router(
    Group(
        doc_type="functional_requirement",
        prefix="/functional_requirements",
        tag="functional_requirements",
        list_op="get_functional_requirements",
        get_op="get_functional_requirement_by_name",
        post_op="post_functional_requirement",
        put_op="put_functional_requirement",
        delete_op="delete_functional_requirement",
        not_found="FR not found",
        deleted=lambda name: f"deleted functional requirement {name}",
    )
)
