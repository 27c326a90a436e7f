"""A FUSE filesystem that forgets, on command, everything not fsynced.

It keeps every file and directory in memory. A write, a truncate, a
chmod change the file's current state; only ``fsync`` of that file makes
it durable. A name created, renamed, unlinked, a directory made or removed
change the directory's current entries; only ``fsync`` of that directory
makes them durable (as LazyFS does). A power loss (:meth:`Tree.power_loss`)
brings every node back to its durable state and drops what is no longer
reachable from the root: a file whose name was made durable but whose data
never was comes back empty, a rename whose directory was never fsynced is
undone, a directory whose parent was never fsynced is gone with all it
held.

Run as a process of its own (``python tests/powerloss_fs.py MOUNTPOINT``),
so that the power loss of the processes using it does not kill it; its
standard input takes one command a line, each answered on standard output:

- ``powerloss``: forget what was not fsynced; answers ``ok <changes lost>``;
- ``sync``: make everything durable, as a ``sync`` would (to set up a
  tree that exists before the test); answers ``ok``;
- end of input: unmount and exit.

It prints ``mounted`` when the filesystem answers. :class:`PowerLossFS`
runs it for tests and skips the test, saying why, where FUSE cannot be
mounted (no /dev/fuse, no libfuse 3, no binding, no permission).
"""

import ctypes.util
import errno
import importlib.util
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

MOUNT_TIMEOUT = 20.0
ROOT = 1


class Node:
    """A file or a directory: its current state and its durable one."""

    def __init__(self, mode):
        self.mode = mode
        self.is_dir = stat.S_ISDIR(mode)
        self.data = bytearray()
        self.entries = {}  # name -> node id (directories)
        self.uid = os.getuid()
        self.gid = os.getgid()
        self.mtime = self.ctime = time.time_ns()
        # what survives a power loss: never fsynced is empty
        self.durable_mode = mode
        self.durable_data = b''
        self.durable_entries = {}

    def sync(self):
        """This node's fsync; return whether anything became durable."""
        changed = self.durable_mode != self.mode or (
            self.durable_entries != self.entries
            if self.is_dir
            else self.durable_data != self.data
        )
        self.durable_mode = self.mode
        if self.is_dir:
            self.durable_entries = dict(self.entries)
        else:
            self.durable_data = bytes(self.data)
        return changed

    def dirty(self):
        return self.durable_mode != self.mode or (
            self.durable_entries != self.entries
            if self.is_dir
            else self.durable_data != self.data
        )

    def restore(self):
        self.mode = self.durable_mode
        self.entries = dict(self.durable_entries)
        self.data = bytearray(self.durable_data)


class Tree:
    """The filesystem's state, by node id, and its operations on paths.

    Errors are OSError with an errno. Not thread-safe: the FUSE glue
    holds a lock around every call.
    """

    def __init__(self):
        self.nodes = {ROOT: Node(stat.S_IFDIR | 0o755)}
        self.next_id = ROOT + 1
        self.handles = {}  # file handle -> node id
        self.next_handle = 1
        self.power_losses = 0

    # lookups

    def lookup(self, path):
        node_id = ROOT
        for part in Path(path).parts[1:]:
            node = self.nodes[node_id]
            if not node.is_dir:
                raise OSError(errno.ENOTDIR, path)
            if part not in node.entries:
                raise OSError(errno.ENOENT, path)
            node_id = node.entries[part]
        return node_id

    def parent(self, path):
        """(directory node, name) for ``path``."""
        directory, name = os.path.split(path)
        node = self.nodes[self.lookup(directory)]
        if not node.is_dir:
            raise OSError(errno.ENOTDIR, path)
        return node, name

    def node(self, path=None, handle=None):
        if handle is not None and handle in self.handles:
            return self.nodes[self.handles[handle]]
        if path is None:
            raise OSError(errno.EBADF, 'no such handle')
        return self.nodes[self.lookup(path)]

    def open(self, path):
        handle = self.next_handle
        self.next_handle += 1
        self.handles[handle] = self.lookup(path)
        return handle

    def release(self, handle):
        self.handles.pop(handle, None)

    # changes of names

    def make(self, path, mode):
        directory, name = self.parent(path)
        if name in directory.entries:
            raise OSError(errno.EEXIST, path)
        node_id = self.next_id
        self.next_id += 1
        self.nodes[node_id] = Node(mode)
        directory.entries[name] = node_id
        directory.mtime = time.time_ns()

    def unlink(self, path):
        directory, name = self.parent(path)
        node_id = self.lookup(path)
        if self.nodes[node_id].is_dir:
            raise OSError(errno.EISDIR, path)
        del directory.entries[name]

    def rmdir(self, path):
        directory, name = self.parent(path)
        node = self.nodes[self.lookup(path)]
        if not node.is_dir:
            raise OSError(errno.ENOTDIR, path)
        if node.entries:
            raise OSError(errno.ENOTEMPTY, path)
        del directory.entries[name]

    def rename(self, old, new):
        source, old_name = self.parent(old)
        target, new_name = self.parent(new)
        node_id = self.lookup(old)
        if new_name in target.entries:
            replaced = self.nodes[target.entries[new_name]]
            if replaced.is_dir != self.nodes[node_id].is_dir:
                raise OSError(
                    errno.EISDIR if replaced.is_dir else errno.ENOTDIR, new
                )
            if replaced.is_dir and replaced.entries:
                raise OSError(errno.ENOTEMPTY, new)
        del source.entries[old_name]
        target.entries[new_name] = node_id

    # data

    def write(self, node, data, offset):
        end = offset + len(data)
        if len(node.data) < offset:
            node.data.extend(bytes(offset - len(node.data)))
        node.data[offset:end] = data
        node.mtime = time.time_ns()
        return len(data)

    def truncate(self, node, length):
        del node.data[length:]
        node.data.extend(bytes(length - len(node.data)))
        node.mtime = time.time_ns()

    # durability

    def sync_all(self):
        for node in self.nodes.values():
            node.sync()

    def power_loss(self):
        """Forget everything not fsynced; return how many nodes lost
        something."""
        lost = sum(node.dirty() for node in self.nodes.values())
        for node in self.nodes.values():
            node.restore()
        reachable, todo = set(), [ROOT]
        while todo:
            node_id = todo.pop()
            if node_id in reachable:
                continue
            reachable.add(node_id)
            todo.extend(self.nodes[node_id].entries.values())
        self.nodes = {i: n for i, n in self.nodes.items() if i in reachable}
        self.handles.clear()
        self.power_losses += 1
        return lost


def make_operations(tree, lock):
    """mfusepy's Operations over ``tree``, every call under ``lock``."""
    import mfusepy

    def guarded(method):
        def call(self, *args):
            with lock:
                try:
                    return method(self, *args)
                except OSError as exc:
                    raise mfusepy.FuseOSError(exc.errno or errno.EIO) from exc
                except KeyError as exc:
                    raise mfusepy.FuseOSError(errno.ENOENT) from exc

        call.__name__ = method.__name__
        return call

    class PowerLossOperations(mfusepy.Operations):
        use_ns = True

        @guarded
        def getattr(self, path, fh=None):
            node = tree.node(path, fh)
            size = 4096 if node.is_dir else len(node.data)
            return {
                'st_mode': node.mode,
                'st_size': size,
                'st_nlink': 2 if node.is_dir else 1,
                'st_uid': node.uid,
                'st_gid': node.gid,
                'st_mtime': node.mtime,
                'st_ctime': node.ctime,
                'st_atime': node.mtime,
            }

        @guarded
        def readdir(self, path, fh):
            return ['.', '..', *tree.node(path).entries]

        @guarded
        def mkdir(self, path, mode):
            tree.make(path, stat.S_IFDIR | (mode & 0o7777))
            return 0

        @guarded
        def rmdir(self, path):
            tree.rmdir(path)
            return 0

        @guarded
        def create(self, path, mode, fi=None):
            tree.make(path, stat.S_IFREG | (mode & 0o7777))
            return tree.open(path)

        @guarded
        def open(self, path, flags=0):
            return tree.open(path)

        @guarded
        def release(self, path, fh):
            tree.release(fh)
            return 0

        @guarded
        def flush(self, path, fh):
            return 0

        @guarded
        def fsync(self, path, datasync, fh):
            tree.node(path, fh).sync()
            return 0

        # a directory is opened, released and fsynced as a file is
        opendir = open
        releasedir = release
        fsyncdir = fsync

        @guarded
        def read(self, path, size, offset, fh):
            return bytes(tree.node(path, fh).data[offset : offset + size])

        @guarded
        def write(self, path, data, offset, fh):
            return tree.write(tree.node(path, fh), data, offset)

        @guarded
        def truncate(self, path, length, fh=None):
            tree.truncate(tree.node(path, fh), length)
            return 0

        @guarded
        def unlink(self, path):
            tree.unlink(path)
            return 0

        @guarded
        def rename(self, old, new):
            tree.rename(old, new)
            return 0

        @guarded
        def chmod(self, path, mode):
            node = tree.node(path)
            node.mode = stat.S_IFMT(node.mode) | (mode & 0o7777)
            return 0

        @guarded
        def chown(self, path, uid, gid):
            node = tree.node(path)
            node.uid = node.uid if uid == -1 else uid
            node.gid = node.gid if gid == -1 else gid
            return 0

        @guarded
        def utimens(self, path, times=None):
            node = tree.node(path)
            node.mtime = times[1] if times else time.time_ns()
            return 0

        @guarded
        def statfs(self, path):
            return {
                'f_bsize': 4096,
                'f_frsize': 4096,
                'f_blocks': 1 << 20,
                'f_bfree': 1 << 19,
                'f_bavail': 1 << 19,
                'f_files': 1 << 16,
                'f_ffree': 1 << 15,
                'f_namemax': 255,
            }

        @guarded
        def link(self, target, source):
            raise OSError(errno.EPERM, target)

        @guarded
        def symlink(self, target, source):
            raise OSError(errno.EPERM, target)

        def init(self, path):
            # called once the kernel has the mount: tell the test, from
            # another thread (the kernel waits for init to return)
            threading.Thread(target=announce_mounted, daemon=True).start()

    return PowerLossOperations()


def announce_mounted():
    print('mounted', flush=True)


def control(tree, lock, mountpoint):
    """Serve the commands of standard input; unmount at its end."""
    for line in sys.stdin:
        command = line.strip()
        with lock:
            if command == 'powerloss':
                answer = f'ok {tree.power_loss()}'
            elif command == 'sync':
                tree.sync_all()
                answer = 'ok'
            else:
                answer = f'error unknown command {command!r}'
        print(answer, flush=True)
    unmount(mountpoint)


def unmount(mountpoint):
    for command in (
        ['fusermount3', '-u', '-z', mountpoint],
        ['umount', '-l', mountpoint],
    ):
        if (
            shutil.which(command[0])
            and subprocess.run(command, stderr=subprocess.DEVNULL).returncode
            == 0
        ):
            return


def main(mountpoint):
    import mfusepy

    tree = Tree()
    lock = threading.Lock()
    threading.Thread(
        target=control, args=(tree, lock, mountpoint), daemon=True
    ).start()
    # no kernel cache: after a power loss every read and lookup must see
    # the durable state, not what the page cache or dentries kept
    mfusepy.FUSE(
        make_operations(tree, lock),
        mountpoint,
        foreground=True,
        nothreads=True,
        direct_io=True,
        hard_remove=True,
        entry_timeout=0,
        attr_timeout=0,
        negative_timeout=0,
        fsname='powerloss_fs',
    )


# for tests


class PowerLossFS:
    """The filesystem mounted on ``mountpoint`` by a process of its own;
    ``power_loss()``, ``sync()``, ``close()``. Skips the calling test
    when FUSE cannot be mounted here."""

    def __init__(self, mountpoint, log):
        import pytest

        reason = fuse_unavailable()
        if reason:
            pytest.skip(f'power-loss filesystem: {reason}')
        self.mountpoint = Path(mountpoint)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.log = Path(log)
        with open(self.log, 'ab') as stderr:
            self.process = subprocess.Popen(
                [sys.executable, __file__, str(self.mountpoint)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                start_new_session=True,
                # mfusepy prefers libfuse 2 where both are installed
                env={**os.environ, 'FUSE_LIBRARY_NAME': 'fuse3'},
            )
        line = self._answer(MOUNT_TIMEOUT)
        if line != 'mounted' or not os.path.ismount(self.mountpoint):
            self.close()
            log = self.log.read_text(errors='replace').splitlines()
            said = ' / '.join(dict.fromkeys(log[:1] + log[-1:]))
            pytest.skip(
                f'power-loss filesystem: cannot mount FUSE here '
                f'({line or "no answer"}): {said} (see {self.log})'
            )

    def _answer(self, timeout):
        result = []
        reader = threading.Thread(
            target=lambda: result.append(self.process.stdout.readline()),
            daemon=True,
        )
        reader.start()
        reader.join(timeout)
        return result[0].strip() if result else ''

    def command(self, command):
        self.process.stdin.write(command + '\n')
        self.process.stdin.flush()
        answer = self._answer(60)
        assert answer.startswith('ok'), (command, answer)
        return answer

    def power_loss(self):
        """Forget what was not fsynced (every process using the
        filesystem must be dead by now); return how many files and
        directories lost something."""
        # a round trip, so that requests the dead processes left queued
        # are served before, not after, the power loss
        os.listdir(self.mountpoint)
        return int(self.command('powerloss').split()[1])

    def sync(self):
        self.command('sync')

    def close(self):
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        if os.path.ismount(self.mountpoint):
            unmount(str(self.mountpoint))
        self.process.stdout.close()


def fuse_unavailable():
    """Why FUSE cannot be mounted here, or '' when it may be."""
    if not os.path.exists('/dev/fuse'):
        return 'no /dev/fuse'
    if not os.access('/dev/fuse', os.R_OK | os.W_OK):
        return 'no access to /dev/fuse (not root?)'
    if importlib.util.find_spec('mfusepy') is None:
        return 'the mfusepy binding is not installed (pip install mfusepy)'
    if ctypes.util.find_library('fuse3') is None:
        return 'libfuse 3 is not installed (apt-get install fuse3 libfuse3-3)'
    return ''


if __name__ == '__main__':
    main(sys.argv[1])
