#if canImport(Glibc)
import Glibc
#endif

/// The directories the daemon keeps its state and sockets in must be its own: no other non-root uid may be able to
/// add, rename or remove an entry in them, or in any directory above them (else it could swap the socket the admin
/// sends secrets to, or the database, for its own).
///
/// The rule, for each directory on the path (every symbolic link on the way followed and its target checked too):
/// - it is owned by root or by the daemon's uid;
/// - it is not writable by group or others, except that an ancestor may be when its sticky bit is set (`/tmp`:
///   others can add entries but not rename or remove ours). The directory that directly holds the state or a socket
///   must not be writable by group or others at all;
/// - a symbolic link in a sticky directory is owned by root or the daemon's uid (else its owner can point it
///   elsewhere).
/// POSIX ACLs are not read: a directory given to other users through an ACL is not detected.
public enum TrustedDirectory {
    /// Symbolic links followed before a path counts as a loop (the kernel's own limit).
    static let maximumLinks = 40

    /// Refuses `path` (a directory that holds the state or a socket) unless it and every directory above it are
    /// safe from other uids, as the type's documentation says.
    ///
    /// - Parameters:
    ///   - path: The directory, absolute (a relative one is taken against the working directory).
    ///   - purpose: What it holds, for the message ("state directory", "socket directory").
    ///   - owner: The daemon's uid.
    ///   - sharedLeaf: Whether `path` itself may be shared-writable with the sticky bit (when it is only the parent of
    ///     a directory about to be created).
    /// - Throws: `StartupError` naming the directory and the reason.
    public static func check(
        _ path: String,
        purpose: String,
        owner: uid_t = geteuid(),
        sharedLeaf: Bool = false
    ) throws(StartupError) {
        try Self.walk(path, purpose: purpose, shown: path, owner: owner, sharedLeaf: sharedLeaf)
    }

    /// ``check(_:purpose:owner:sharedLeaf:)``, naming `shown` in messages (the directory about to be made in `path`).
    static func walk(
        _ path: String,
        purpose: String,
        shown: String,
        owner: uid_t,
        sharedLeaf: Bool
    ) throws(StartupError) {
        let context = Context(purpose: purpose, shown: shown, owner: owner)
        var pending = Self.components(path.hasPrefix("/") ? path : "\(DaemonLayout.currentDirectory())/\(path)")
        var current = "/"
        var links = 0
        var info = try context.status(of: current)
        try Self.checkDirectory(
            current,
            info,
            isLeaf: pending.isEmpty && !sharedLeaf,
            context: context
        )
        while !pending.isEmpty {
            let name = pending.removeFirst()
            if name == ".." {
                current = UnixSocketFile.directory(of: current)
                continue
            }
            let next = current == "/" ? "/\(name)" : "\(current)/\(name)"
            info = try context.status(of: next)
            if info.st_mode & S_IFMT == S_IFLNK {
                links += 1
                guard links <= Self.maximumLinks else {
                    throw StartupError("\(purpose) \(shown): too many symbolic links on the way")
                }
                // `current` has passed the checks; in a sticky directory the link's owner may still replace it.
                let parent = try context.status(of: current)
                if parent.st_mode & S_ISVTX != 0, info.st_uid != 0, info.st_uid != owner {
                    throw StartupError(
                        "\(purpose) \(shown): the symbolic link \(next) is owned by uid \(info.st_uid) in the shared directory \(current), so that user can point it elsewhere; use a path without it"
                    )
                }
                let target = try context.linkTarget(next)
                pending = Self.components(target) + pending
                if target.hasPrefix("/") {
                    current = "/"
                    info = try context.status(of: current)
                    try Self.checkDirectory(current, info, isLeaf: false, context: context)
                }
                continue
            }
            try Self.checkDirectory(
                next,
                info,
                isLeaf: pending.isEmpty && !sharedLeaf,
                context: context
            )
            current = next
        }
    }

    /// Creates `path` with `mode` unless it exists (with its missing parents at 0755 when `parents` is set), then
    /// checks it as ``check(_:purpose:owner:sharedLeaf:)`` does.
    ///
    /// Each parent is checked before a directory is made in it, and the new directory gets its mode through a
    /// descriptor opened without following links, so that nobody can redirect the `chmod` to another file.
    ///
    /// - Throws: `StartupError` naming the directory and the reason.
    public static func create(
        _ path: String,
        mode: mode_t,
        parents: Bool,
        purpose: String,
        owner: uid_t = geteuid()
    ) throws(StartupError) {
        try Self.makeDirectory(path, mode: mode, parents: parents, purpose: purpose, owner: owner)
        try Self.check(path, purpose: purpose, owner: owner)
    }

    static func makeDirectory(
        _ path: String,
        mode: mode_t,
        parents: Bool,
        purpose: String,
        owner: uid_t
    ) throws(StartupError) {
        var info = stat()
        if stat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFDIR else { throw StartupError("\(purpose) \(path) is not a directory") }
            return
        }
        guard errno == ENOENT else {
            throw StartupError("cannot use \(purpose) \(path): \(String(cString: strerror(errno)))")
        }
        let parent = UnixSocketFile.directory(of: path)
        if parents, parent != path, parent != "/", parent != "." {
            try Self.makeDirectory(parent, mode: 0o755, parents: true, purpose: purpose, owner: owner)
        }
        try Self.walk(parent, purpose: purpose, shown: path, owner: owner, sharedLeaf: true)
        guard mkdir(path, 0o700) == 0 else {
            // Made meanwhile by someone else: the check that follows judges it.
            if errno == EEXIST { return }
            throw StartupError("cannot create \(purpose) \(path): \(String(cString: strerror(errno)))")
        }
        // mkdir's mode passed through the umask: set the one intended, on the directory itself.
        let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw StartupError("cannot open \(purpose) \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        guard fstat(descriptor, &info) == 0, info.st_uid == owner else {
            throw StartupError("\(purpose) \(path) is owned by uid \(info.st_uid), not the daemon's uid \(owner)")
        }
        guard fchmod(descriptor, mode) == 0 else {
            throw StartupError("cannot set the mode of \(purpose) \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Refuses the directory `directory` (described by `info`) when it breaks the rule.
    static func checkDirectory(_ directory: String, _ info: stat, isLeaf: Bool, context: Context) throws(StartupError) {
        let subject =
            isLeaf
            ? (directory == context.shown
                ? "\(context.purpose) \(directory)" : "\(context.purpose) \(context.shown) (\(directory))")
            : "\(context.purpose) \(context.shown): its parent directory \(directory)"
        guard info.st_mode & S_IFMT == S_IFDIR else { throw StartupError("\(subject) is not a directory") }
        guard info.st_uid == 0 || info.st_uid == context.owner else {
            throw StartupError(
                "\(subject) is owned by uid \(info.st_uid), not root or the daemon's uid \(context.owner); that user could replace what the daemon keeps there"
            )
        }
        let mode = info.st_mode & 0o7777
        let shared = mode & 0o022
        guard shared != 0 else { return }
        let who = shared == 0o022 ? "group and others" : shared == 0o020 ? "its group" : "others"
        let octal = String(mode, radix: 8)
        if isLeaf {
            throw StartupError(
                "\(subject) is writable by \(who) (mode \(octal)); other users could replace what the daemon keeps there; run chmod go-w on it, or use a directory of the daemon's own"
            )
        }
        guard mode & S_ISVTX != 0 else {
            throw StartupError(
                "\(subject) is writable by \(who) without the sticky bit (mode \(octal)); other users could rename what lies below it; run chmod go-w on it"
            )
        }
    }

    /// What a walk names in its messages.
    struct Context {
        var purpose: String
        var shown: String
        var owner: uid_t

        /// `lstat` of `file`.
        func status(of file: String) throws(StartupError) -> stat {
            var info = stat()
            guard lstat(file, &info) == 0 else {
                let reason = String(cString: strerror(errno))
                throw StartupError(
                    file == self.shown
                        ? "cannot use \(self.purpose) \(self.shown): \(reason)"
                        : "cannot use \(self.purpose) \(self.shown): \(file): \(reason)"
                )
            }
            return info
        }

        /// The target of the symbolic link `link`.
        func linkTarget(_ link: String) throws(StartupError) -> String {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let count = readlink(link, &buffer, buffer.count - 1)
            guard count > 0 else {
                throw StartupError(
                    "cannot use \(self.purpose) \(self.shown): cannot read the link \(link): \(String(cString: strerror(errno)))"
                )
            }
            return buffer.withUnsafeBufferPointer { pointer in
                String(decoding: pointer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            }
        }
    }

    /// The non-empty, non-`.` segments of `path`.
    static func components(_ path: String) -> [String] {
        path.split(separator: "/").filter { $0 != "." }.map(String.init)
    }
}
