"""STACKL 0.5 ``/services`` (api.md §A.4)."""

from stackl.api.legacy.common import Group, document_router

router = document_router(
    Group(
        doc_type="service",
        prefix="/services",
        tag="services",
        list_op="get_services",
        get_op="get_service_by_name",
        post_op="post_service",
        put_op="put_service",
        delete_op="delete_service",
        not_found="Service not found",
        deleted=lambda _name: "deleted service",
    )
)
