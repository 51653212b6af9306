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

    static func writeContent(_ c: ContentSpec, config: Config) throws {
        let (h, name) = try parent(of: c.path, config: config)
        try h.writeFile(name, content: c.content, mode: c.mode, uid: c.uid, gid: c.gid)
    }
}
