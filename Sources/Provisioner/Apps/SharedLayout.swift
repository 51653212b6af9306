import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A tenant's web root when its code is a stored release: what is the village's own
/// (`desa/`, `storage/`, `backup_inkremental/`, its `index.php` and `.htaccess`) are its
/// files; everything else is a link, root's, through one root-owned link `.release` to the
/// release's directory (root's, read-only). Changing release is one `rename` of that link:
/// a request sees the old code or the new, never a mix. nginx serves the links
/// (`disable_symlinks if_not_owner`: root's link, root's code) and refuses any link the
/// tenant makes to what it does not own.
///
/// Everything here works through descriptors (`DirHandle`) and never follows a link the
/// tenant could have placed.
public enum SharedLayout {
    /// The one link that names the release.
    public static let releaseLink = ".release"
    /// The village's own, at the top of its web root.
    static let own: Set<String> = ["desa", "storage", "backup_inkremental", "index.php", ".htaccess"]
    /// Own directories that hold some of the release's files (letter templates,
    /// placeholders): each of those is linked, one level below (`storage/app/template`).
    static let mixed = ["storage", "backup_inkremental"]

    /// Points the web root at `release` (a stored release's directory): the village's own
    /// directories exist with its owner and the web server's group, its front controller
    /// (`frontController`: `index.php`, or a name held back until the site may go public)
    /// and `.htaccess` are the release's, the code is linked, then `.release` is switched,
    /// then links to what the release no longer has are removed.
    static func point(_ pub: DirHandle, release: String, uid: Int, www: Int, frontController: String = "index.php") throws {
        let top = try FileManager.default.contentsOfDirectory(atPath: release).filter { !$0.hasPrefix(".") }
        let via = releaseLink + "/"
        for d in mixed where Releases.isDirectory(release + "/" + d) {
            let mine = try pub.ensureDir(d, uid: uid, gid: www, mode: 0o2775)
            for name in try FileManager.default.contentsOfDirectory(atPath: release + "/" + d) where !name.hasPrefix(".") {
                let src = release + "/" + d + "/" + name
                if Releases.isDirectory(src) {
                    // One level more: storage/app is the village's, its template/ the release's.
                    let sub = try mine.ensureDir(name, uid: uid, gid: www, mode: 0o2775)
                    for leaf in try FileManager.default.contentsOfDirectory(atPath: src) where !leaf.hasPrefix(".") {
                        try sub.setLink("../../" + via + d + "/" + name + "/" + leaf, named: leaf)
                    }
                    removeStale(sub, prefix: "../../" + via + d + "/" + name + "/", release: src)
                } else {
                    try mine.setLink("../" + via + d + "/" + name, named: name)
                }
            }
            removeStale(mine, prefix: "../" + via + d + "/", release: release + "/" + d)
        }
        if let index = AtomicFiles.read(release + "/index.php"), pub.readFile(frontController, limit: 1 << 20) != index {
            try pub.writeFile(frontController, content: index, mode: 0o644, uid: uid, gid: www)
        }
        // OpenSID builds clean URLs (/siteman, not /index.php/siteman) only when it sees an
        // .htaccess; nginx reads none and denies dotfiles.
        if let ht = AtomicFiles.read(release + "/htaccess.txt"), pub.readFile(".htaccess", limit: 1 << 20) != ht {
            try pub.writeFile(".htaccess", content: ht, mode: 0o644, uid: uid, gid: www)
        }
        for name in top where !own.contains(name) { try pub.setLink(via + name, named: name) }
        try pub.setLink(release, named: releaseLink)
        removeStale(pub, prefix: via, release: release)
    }

    /// Removes root's links through `.release` to what the release does not have.
    static func removeStale(_ dir: DirHandle, prefix: String, release: String) {
        for name in (try? dir.entries()) ?? [] {
            guard let l = dir.readLink(name), l.uid == 0, l.target.hasPrefix(prefix) else { continue }
            let rest = String(l.target.dropFirst(prefix.count))
            var st = stat()
            if rest.contains("/") || lstat(release + "/" + rest, &st) != 0 { dir.unlink(name) }
        }
    }

    /// The release directory the web root points at: root's `.release` link, nothing else.
    public static func current(_ pub: DirHandle) -> String? {
        guard let l = pub.readLink(releaseLink), l.uid == 0 else { return nil }
        return l.target
    }

    /// A full copy of a release (today's `app install` before releases were shared): its
    /// code is a directory of the tenant's, not root's link.
    public static func isFullCopy(_ pub: DirHandle) -> Bool {
        pub.stat("donjo-app")?.isDirectory == true
    }
}
