import CSystemd
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A directory held open by descriptor, for work inside trees a hostile tenant controls.
///
/// Every call takes one path component relative to this directory and never follows a
/// link: directories are opened with `O_NOFOLLOW|O_DIRECTORY`, files with `O_NOFOLLOW`,
/// ownership and modes are changed through the descriptor (`fchown`, `fchmod`) or with
/// `AT_SYMLINK_NOFOLLOW`. A tenant that swaps a directory for a link between two calls
/// makes the next call fail; it never redirects root outside its tree. Not thread-safe.
public final class DirHandle {
    let fd: Int32
    /// For messages only: nothing is ever opened by this path after `open`.
    public let path: String

    init(fd: Int32, path: String) { self.fd = fd; self.path = path }
    deinit { close(fd) }

    /// Opens a directory whose whole path is root's (the web root, the archive, the log
    /// root). Links on that path are followed: only root can have made them (an operator
    /// may well keep /srv/desa on another disk through one).
    public static func open(_ path: String) throws -> DirHandle {
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw DesaError.system("cannot open directory \(path): \(errnoText())") }
        return DirHandle(fd: fd, path: path)
    }

    /// Opens a tenant's home (or another directory a tenant owns) whose parent is root's:
    /// the parent by `open`, the last component without following a link.
    public static func openHome(_ path: String) throws -> DirHandle {
        try open((path as NSString).deletingLastPathComponent).openDir((path as NSString).lastPathComponent)
    }

    static func checkName(_ name: String) throws {
        if name.isEmpty || name == "." || name == ".." || name.contains("/") || name.contains("\0") {
            throw DesaError.system("\(Quote.show(name)) is not a single file name")
        }
    }

    func sub(_ name: String) -> String { path + "/" + name }

    /// Opens a subdirectory; a link or anything else in its place is an error.
    public func openDir(_ name: String) throws -> DirHandle {
        try Self.checkName(name)
        let f = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard f >= 0 else {
            let e = errno
            throw DesaError.system(e == ENOTDIR || e == ELOOP ? "\(sub(name)) is not a directory (a link or a file is in its place)"
                                   : "cannot open directory \(sub(name)): \(String(cString: strerror(e)))")
        }
        return DirHandle(fd: f, path: sub(name))
    }

    /// `lstat` of an entry.
    public func stat(_ name: String) -> FileStat? {
        var st = Glibc.stat()
        guard (try? Self.checkName(name)) != nil, fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return nil }
        return FileStat(uid: Int(st.st_uid), gid: Int(st.st_gid), mode: Int(st.st_mode & 0o7777),
                        isDirectory: (st.st_mode & S_IFMT) == S_IFDIR)
    }

    /// Creates the subdirectory if missing, then gives it exactly this owner, group and mode.
    @discardableResult
    public func ensureDir(_ name: String, uid: Int, gid: Int, mode: Int) throws -> DirHandle {
        try Self.checkName(name)
        if mkdirat(fd, name, 0o700) != 0 && errno != EEXIST {
            throw DesaError.system("cannot create directory \(sub(name)): \(errnoText())")
        }
        let d = try openDir(name)
        try d.ensureOwnership(uid: uid, gid: gid, mode: mode)
        return d
    }

    /// Gives this directory exactly this owner, group and mode.
    public func ensureOwnership(uid: Int, gid: Int, mode: Int) throws {
        try Self.own(fd, path: path, uid: uid, gid: gid, mode: mode)
    }

    static func own(_ fd: Int32, path: String, uid: Int, gid: Int, mode: Int) throws {
        var st = Glibc.stat()
        guard fstat(fd, &st) == 0 else { throw DesaError.system("cannot stat \(path): \(errnoText())") }
        if Int(st.st_uid) != uid || Int(st.st_gid) != gid {
            if fchown(fd, uid_t(uid), gid_t(gid)) != 0 { throw DesaError.system("cannot chown \(path): \(errnoText())") }
        }
        // After the chown, which clears the setgid bit.
        if Int(st.st_mode & 0o7777) != mode || Int(st.st_uid) != uid || Int(st.st_gid) != gid {
            if fchmod(fd, mode_t(mode)) != 0 { throw DesaError.system("cannot chmod \(path): \(errnoText())") }
        }
    }

    /// Creates an empty regular file if missing (never truncates), then gives it exactly
    /// this owner, group and mode; a link, fifo or directory in its place is an error.
    public func ensureFile(_ name: String, uid: Int, gid: Int, mode: Int) throws {
        try Self.checkName(name)
        let f = openat(fd, name, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, mode_t(mode))
        guard f >= 0 else { throw DesaError.system("cannot open \(sub(name)): \(errnoText())") }
        defer { close(f) }
        var st = Glibc.stat()
        guard fstat(f, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw DesaError.system("\(sub(name)) is not a regular file")
        }
        try Self.own(f, path: sub(name), uid: uid, gid: gid, mode: mode)
    }

    /// Replaces `name` with `content` atomically: a temp file under a random name the
    /// tenant cannot guess or pre-empt (`O_EXCL`), then `renameat`, which replaces a link
    /// itself, never its target.
    public func writeFile(_ name: String, content: String, mode: Int, uid: Int, gid: Int) throws {
        let temp = try stageFile(name, content: content, mode: mode, uid: uid, gid: gid)
        try commit(temp, as: name)
    }

    /// Writes `content` to a new file named `staged` (created with `O_EXCL`, after
    /// removing whatever has that name) and returns that name; `commit` renames it into
    /// place, `unlink` drops it. For a change that must happen between the two (a new
    /// password set on the server before the file that holds it replaces the old one).
    public func stageFile(_ name: String, content: String, mode: Int, uid: Int, gid: Int, staged: String? = nil) throws -> String {
        try Self.checkName(name)
        var temp = "", f: Int32 = -1
        if let staged {
            try Self.checkName(staged)
            unlinkat(fd, staged, 0)
            temp = staged
            f = openat(fd, temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        } else {
            for _ in 0..<8 {
                temp = ".\(name).desa-\(String(UInt64.random(in: 0...UInt64.max), radix: 36))"
                f = openat(fd, temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
                if f >= 0 || errno != EEXIST { break }
            }
        }
        guard f >= 0 else { throw DesaError.system("cannot create a temporary file in \(path): \(errnoText())") }
        do {
            defer { close(f) }
            try AtomicFiles.writeAll(f, Array(content.utf8), what: sub(temp))
            if fchown(f, uid_t(uid), gid_t(gid)) != 0 || fchmod(f, mode_t(mode)) != 0 {
                throw DesaError.system("cannot set the owner of \(sub(temp)): \(errnoText())")
            }
            if fsync(f) != 0 { throw DesaError.system("cannot sync \(sub(temp)): \(errnoText())") }
        } catch {
            unlinkat(fd, temp, 0)
            throw error
        }
        return temp
    }

    /// Renames a staged file into place (the entry itself, never what a link names).
    public func commit(_ staged: String, as name: String) throws {
        if renameat(fd, staged, fd, name) != 0 {
            let e = errnoText()
            unlinkat(fd, staged, 0)
            throw DesaError.system("cannot rename \(sub(staged)) to \(name): \(e)")
        }
        fsync(fd)
    }

    /// Removes a file (not a directory); missing is fine.
    public func unlink(_ name: String) {
        guard (try? Self.checkName(name)) != nil else { return }
        unlinkat(fd, name, 0)
    }

    /// The file's content if it is a regular file no larger than `limit` bytes, read
    /// without following a link.
    public func readFile(_ name: String, limit: Int = 65536) -> String? {
        guard (try? Self.checkName(name)) != nil else { return nil }
        let f = openat(fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard f >= 0 else { return nil }
        defer { close(f) }
        var st = Glibc.stat()
        guard fstat(f, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, Int(st.st_size) <= limit else { return nil }
        var buf = [UInt8](repeating: 0, count: Int(st.st_size))
        let n = buf.withUnsafeMutableBytes { read(f, $0.baseAddress, $0.count) }
        guard n >= 0 else { return nil }
        return String(decoding: buf[0..<n], as: UTF8.self)
    }

    /// A symbolic link, made only where nothing has that name yet.
    public func symlink(_ target: String, named name: String) throws {
        try Self.checkName(name)
        if symlinkat(target, fd, name) != 0 && errno != EEXIST {
            throw DesaError.system("cannot create link \(sub(name)): \(errnoText())")
        }
    }

    /// A link's target and owner; nil when `name` is not a link.
    public func readLink(_ name: String) -> (target: String, uid: Int)? {
        guard (try? Self.checkName(name)) != nil else { return nil }
        var st = Glibc.stat()
        guard fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0, (st.st_mode & S_IFMT) == S_IFLNK else { return nil }
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlinkat(fd, name, &buf, buf.count - 1)
        guard n >= 0 else { return nil }
        return (String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self), Int(st.st_uid))
    }

    /// Makes `name` a link to `target` in one step (a link made under another name, then
    /// renamed over it): whatever was there, a file or another link, is replaced at once; a
    /// directory in its place is removed first, without following anything in it.
    public func setLink(_ target: String, named name: String) throws {
        try Self.checkName(name)
        if let l = readLink(name), l.target == target, l.uid == Int(geteuid()) { return }
        if stat(name)?.isDirectory == true { try removeTree(name) }
        let tmp = ".desa-link-" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
        if symlinkat(target, fd, tmp) != 0 { throw DesaError.system("cannot create link \(sub(tmp)): \(errnoText())") }
        try commit(tmp, as: name)
    }

    /// Moves an entry to another directory (`renameat`): the entry itself, never what a link names.
    public func move(_ name: String, to: DirHandle, as newName: String) throws {
        try Self.checkName(name); try Self.checkName(newName)
        if renameat(fd, name, to.fd, newName) != 0 {
            throw DesaError.system("cannot move \(sub(name)) to \(to.sub(newName)): \(errnoText())")
        }
    }

    /// The names in this directory, without `.` and `..`.
    public func entries() throws -> [String] {
        let copy = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard copy >= 0, let dir = fdopendir(copy) else { throw DesaError.system("cannot read \(path): \(errnoText())") }
        defer { closedir(dir) }
        var out: [String] = []
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if name != "." && name != ".." { out.append(name) }
        }
        return out
    }

    /// Removes `name` and everything below it without following a link. Missing is fine.
    public func removeTree(_ name: String) throws {
        try Self.checkName(name)
        guard let st = stat(name) else { return }
        if st.isDirectory {
            let d = try openDir(name)
            for e in try d.entries() { try d.removeTree(e) }
            if unlinkat(fd, name, AT_REMOVEDIR) != 0 && errno != ENOENT { throw DesaError.system("cannot remove \(sub(name)): \(errnoText())") }
        } else if unlinkat(fd, name, 0) != 0 && errno != ENOENT {
            throw DesaError.system("cannot remove \(sub(name)): \(errnoText())")
        }
    }

    /// Gives every entry below this directory the group and mode its namesake below `src`
    /// has (a copy made by a user who could not give them: `cp -a` as the tenant cannot set
    /// the web server's group). Entries are opened without following links and changed
    /// through their descriptors; links keep what they have.
    public func matchGroupsAndModes(of src: DirHandle) throws {
        for e in try entries() {
            var a = Glibc.stat(), b = Glibc.stat()
            guard fstatat(src.fd, e, &a, AT_SYMLINK_NOFOLLOW) == 0, fstatat(fd, e, &b, AT_SYMLINK_NOFOLLOW) == 0,
                  (a.st_mode & S_IFMT) == (b.st_mode & S_IFMT) else { continue }
            let kind = b.st_mode & S_IFMT
            guard kind == S_IFDIR || kind == S_IFREG else { continue }
            if a.st_gid != b.st_gid || (a.st_mode & 0o7777) != (b.st_mode & 0o7777) {
                let f = openat(fd, e, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
                guard f >= 0 else { throw DesaError.system("cannot open \(sub(e)): \(errnoText())") }
                defer { close(f) }
                try Self.own(f, path: sub(e), uid: Int(b.st_uid), gid: Int(a.st_gid), mode: Int(a.st_mode & 0o7777))
            }
            if kind == S_IFDIR { try openDir(e).matchGroupsAndModes(of: src.openDir(e)) }
        }
    }

    /// Gives every entry below this directory (links themselves, not their targets) this owner.
    public func chownTree(uid: Int, gid: Int) throws {
        for e in try entries() {
            if fchownat(fd, e, uid_t(uid), gid_t(gid), AT_SYMLINK_NOFOLLOW) != 0 && errno != ENOENT {
                throw DesaError.system("cannot chown \(sub(e)): \(errnoText())")
            }
            if stat(e)?.isDirectory == true { try openDir(e).chownTree(uid: uid, gid: gid) }
        }
    }
}
