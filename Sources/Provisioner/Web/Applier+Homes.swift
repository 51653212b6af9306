import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The applier's work inside and around tenants' homes. A home and everything below it
/// belongs to a tenant that may swap a directory for a link at any moment, so nothing
/// here resolves a path below the web root: each step walks from the web root (root's)
/// by directory descriptor, never following a link (see `DirHandle`).
extension Applier {
    /// The directory holding the last component of `path`, and that component. Below
    /// the web root every component is opened by descriptor without following links;
    /// elsewhere (root's own directories) the parent is opened as a path.
    static func parent(of path: String, config: Config) throws -> (DirHandle, String) {
        let root = config.webRoot
        let name = (path as NSString).lastPathComponent
        guard path.hasPrefix(root + "/") else {
            return (try DirHandle.open((path as NSString).deletingLastPathComponent), name)
        }
        var h = try DirHandle.open(root)
        for c in path.dropFirst(root.count + 1).split(separator: "/").dropLast() { h = try h.openDir(String(c)) }
        return (h, name)
    }

    static func ensureDirectory(_ d: DirSpec, config: Config) throws {
        let (h, name) = try parent(of: d.path, config: config)
        _ = try h.ensureDir(name, uid: d.uid, gid: d.gid, mode: d.mode)
    }

    static func ensureFile(_ f: FileSpec, config: Config) throws {
        let (h, name) = try parent(of: f.path, config: config)
        try h.ensureFile(name, uid: f.uid, gid: f.gid, mode: f.mode)
    }

    /// A link the tenant may remove or replace: made only where nothing has that name.
    static func createLink(_ path: String, target: String, config: Config) throws {
        let (h, name) = try parent(of: path, config: config)
        try h.symlink(target, named: name)
    }

    static func writeStarterPage(_ path: String, content: String, uid: Int, gid: Int, config: Config) throws {
        let (h, name) = try parent(of: path, config: config)
        try h.writeFile(name, content: content, mode: 0o640, uid: uid, gid: gid)
    }

    /// Moves a home into the archive and gives everything in it to root: the UID will be
    /// reused. The tenant's server logs go along, as `server-logs`.
    static func archive(_ t: Tenant, to: String, config: Config) throws {
        let name = (to as NSString).lastPathComponent
        let archive = try DirHandle.open(config.archiveDir)
        let web = try DirHandle.open(config.webRoot)
        if web.stat(t.slug) != nil {
            try web.move(t.slug, to: archive, as: name)
        }
        let archived = try archive.ensureDir(name, uid: 0, gid: 0, mode: 0o700)
        if let logs = try? DirHandle.open(config.tenantLogRoot), logs.stat(t.slug) != nil {
            try logs.move(t.slug, to: archived, as: "server-logs")
        }
        try archived.chownTree(uid: 0, gid: 0)
        try archived.ensureOwnership(uid: 0, gid: 0, mode: 0o700)
    }

    static func purge(_ t: Tenant, config: Config) throws {
        try DirHandle.open(config.webRoot).removeTree(t.slug)
        if let logs = try? DirHandle.open(config.tenantLogRoot) { try logs.removeTree(t.slug) }
    }

    /// Ends every process of a suspended or deleted tenant, forks included.
    static func stopProcesses(uid: Int, gid: Int) throws {
        let left = try Processes.killAll(uid: uid, gid: gid, timeout: 5)
        if left > 0 { throw DesaError.system("\(left) processes of uid \(uid) are still running after SIGKILL") }
    }
}
