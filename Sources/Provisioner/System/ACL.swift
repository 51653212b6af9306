import CSystemd
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A directory's POSIX access ACL, as far as desa reads it: its named group entries, from
/// the `system.posix_acl_access` attribute (version 2: a 4-byte header, then 8-byte
/// entries of tag, permissions and id, little-endian). No process is started to look.
public enum ACL {
    static let tagGroup: UInt16 = 0x08

    /// Named group entries: permissions (rwx as 4, 2, 1) by GID; empty when the file has
    /// no ACL beyond its mode. Nil when it cannot be read.
    public static func namedGroups(_ path: String) -> [UInt32: UInt16]? {
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = desa_lgetxattr(path, "system.posix_acl_access", &buf, UInt(buf.count))
        if n < 0 { return errno == ENODATA ? [:] : nil }
        guard n >= 4 else { return [:] }
        var out: [UInt32: UInt16] = [:]
        var i = 4
        func u16(_ at: Int) -> UInt16 { UInt16(buf[at]) | UInt16(buf[at + 1]) << 8 }
        while i + 8 <= n {
            let tag = u16(i), perm = u16(i + 2)
            let id = UInt32(buf[i + 4]) | UInt32(buf[i + 5]) << 8 | UInt32(buf[i + 6]) << 16 | UInt32(buf[i + 7]) << 24
            if tag == tagGroup { out[id] = perm }
            i += 8
        }
        return out
    }
}
