#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The master key file: exactly 32 raw bytes, mode 0600 (or stricter), owned by the daemon's user.
///
/// Every failure names the file and the reason, so an operator can fix it without reading code.
public enum KeyFile {
    /// Reads and checks the key file.
    ///
    /// The file is opened without blocking (a FIFO would otherwise wait for a writer) and without following a link;
    /// every check is made on the opened descriptor (`fstat`), never on the path again, so nothing can be swapped in
    /// between.
    ///
    /// - Parameters:
    ///   - path: the key file.
    ///   - owner: the uid that must own it (the daemon's effective uid).
    /// - Throws: `VaultCryptoError` `.keyFile` when it is missing, not a regular file, readable by group or
    ///   others, owned by someone else, or not 32 bytes.
    public static func load(path: String, owner: uid_t = geteuid()) throws -> SecretBytes {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else {
            let code = errno
            var reason =
                code == ENOENT
                ? "it does not exist (create one with `connvaultd --init`, or use --dev)"
                : code == ELOOP ? "it is a symbolic link" : "it cannot be opened: \(Self.errorText(code))"
            // A socket cannot be opened at all (ENXIO); say what it is. The refusal does not depend on this lstat.
            var info = stat()
            if code == ENXIO, lstat(path, &info) == 0, info.st_mode & S_IFMT != S_IFREG {
                reason = "it is not a regular file (it is \(Self.kind(of: info.st_mode)))"
            }
            throw VaultCryptoError(.keyFile, "master key file \(path): \(reason)")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw VaultCryptoError(.keyFile, "master key file \(path): cannot stat: \(Self.errorText(errno))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw VaultCryptoError(
                .keyFile,
                "master key file \(path): it is not a regular file (it is \(Self.kind(of: info.st_mode)))"
            )
        }
        guard info.st_mode & 0o077 == 0 else {
            throw VaultCryptoError(
                .keyFile,
                "master key file \(path): it is readable or writable by group or others (mode \(String(info.st_mode & 0o777, radix: 8))); run chmod 600 on it"
            )
        }
        guard info.st_uid == owner else {
            throw VaultCryptoError(
                .keyFile,
                "master key file \(path): it is owned by uid \(info.st_uid), not the daemon's uid \(owner)"
            )
        }
        guard info.st_size == MasterKey.byteCount else {
            throw VaultCryptoError(
                .keyFile,
                "master key file \(path): it holds \(info.st_size) bytes; a master key is exactly \(MasterKey.byteCount) raw bytes"
            )
        }
        let key = SecretBytes(zeroedCount: MasterKey.byteCount)
        let readCount = key.withUnsafeMutableBytes { buffer in
            var total = 0
            while total < buffer.count {
                let n = read(fd, buffer.baseAddress! + total, buffer.count - total)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { break }
                total += n
            }
            return total
        }
        guard readCount == MasterKey.byteCount else {
            throw VaultCryptoError(.keyFile, "master key file \(path): short read (\(readCount) bytes)")
        }
        return key
    }

    /// Creates a new key file with `key`, mode 0600, failing if the file exists. Durable on return.
    public static func create(path: String, key: MasterKey) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let reason = errno == EEXIST ? "it already exists" : Self.errorText(errno)
            throw VaultCryptoError(.keyFile, "cannot create master key file \(path): \(reason)")
        }
        var ok = true
        key.withUnsafeKeyBytes { bytes in
            var written = 0
            while written < bytes.count {
                let n = write(fd, bytes.baseAddress! + written, bytes.count - written)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else {
                    ok = false
                    return
                }
                written += n
            }
        }
        ok = ok && fsync(fd) == 0
        let writeErrno = errno
        close(fd)
        guard ok else {
            unlink(path)
            throw VaultCryptoError(.keyFile, "cannot write master key file \(path): \(Self.errorText(writeErrno))")
        }
        Self.syncDirectory(of: path)
    }

    /// The staged file a key rotation writes before it commits: `<path>.new`.
    public static func stagedPath(for path: String) -> String { path + ".new" }

    /// Writes `key` to `<path>.new` (replacing a stale one) so that a rotation can commit it after the database.
    public static func stage(path: String, key: MasterKey) throws {
        let staged = Self.stagedPath(for: path)
        unlink(staged)
        try Self.create(path: staged, key: key)
    }

    /// Atomically replaces the key file with its staged successor.
    public static func commitStaged(path: String) throws {
        guard rename(Self.stagedPath(for: path), path) == 0 else {
            throw VaultCryptoError(.keyFile, "cannot install new master key file at \(path): \(Self.errorText(errno))")
        }
        Self.syncDirectory(of: path)
    }

    /// Removes a staged key (a rotation that did not commit).
    public static func discardStaged(path: String) {
        unlink(Self.stagedPath(for: path))
    }

    /// Whether the directory holding `path` can take a staged key file (it cannot under a read-only credential
    /// directory).
    public static func isDirectoryWritable(for path: String) -> Bool {
        access(Self.directory(of: path), W_OK) == 0
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let directory = String(path[..<slash])
        return directory.isEmpty ? "/" : directory
    }

    static func syncDirectory(of path: String) {
        let fd = open(Self.directory(of: path), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }

    static func errorText(_ code: Int32) -> String { String(cString: strerror(code)) }

    /// What a file that is not a regular file is, for a message.
    static func kind(of mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: "a FIFO (named pipe)"
        case S_IFSOCK: "a socket"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFDIR: "a directory"
        case S_IFLNK: "a symbolic link"
        default: "of an unknown type"
        }
    }
}
