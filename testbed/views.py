"""A partition's view outside supervisord, for tests that read and parse
its files without loading them."""

from supervisor_slapos.declarations import Declarations
from supervisor_slapos.partitionview import PartitionView


def files_view(include_dir, partition_id):
    """The view of ``partition_id`` with its files in ``include_dir``
    and no loaded group."""
    include_dir = str(include_dir)
    files = Declarations(include_dir).files_of(partition_id)
    return PartitionView(partition_id, include_dir, tuple(files))
