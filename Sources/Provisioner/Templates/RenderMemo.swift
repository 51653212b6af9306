import Crypto
import Foundation

/// Remembers, across plans of one `Engine` (one config), the SHA-256 of what each set of
/// rendering inputs produced, so a plan can tell that a managed file already holds exactly
/// what its template would give without rendering it again. The agent plans every sweep to
/// look for drift, and rendering 5,000 vhosts and pools took most of that plan; a file
/// whose inputs and bytes are those of the last render needs no render.
///
/// A key covers everything a render reads: the text of every template (`Renderer`'s
/// fingerprint), the kind of file, and the values the template sees. Only renders that
/// succeeded are remembered, so a hit is a file that passed every check (the hardening of
/// vhosts among them) with these inputs. Thread-safe; bounded (cleared when it holds more
/// than `limit` entries, as after a long run of renamed tenants).
public final class RenderMemo: @unchecked Sendable {
    private let lock = NSLock()
    private var digests: [Digest: Digest] = [:]
    let limit: Int

    public init(limit: Int = 200_000) { self.limit = limit }

    func digest(of key: Digest) -> Digest? { lock.withLock { digests[key] } }

    func remember(_ key: Digest, _ d: Digest) {
        lock.withLock {
            if digests.count >= limit { digests.removeAll(keepingCapacity: true) }
            digests[key] = d
        }
    }

    var count: Int { lock.withLock { digests.count } }
}

extension Renderer {
    /// `render()`'s result, or nil when `existing` already is exactly that: known from the
    /// memo without rendering (`values` and `extra` are what the render reads), or found
    /// equal after rendering.
    func rendered(_ kind: String, _ values: @autoclosure () throws -> [String: Any], extra: @autoclosure () -> [String],
                  existing: SeenFile?, _ render: () throws -> String) throws -> String? {
        guard let memo, let existing, let key = memoKey(kind, try values(), extra()) else {
            let out = try render()
            return existing?.holds(out) == true ? nil : out
        }
        if memo.digest(of: key) == existing.digest { return nil }
        let out = try render()
        let digest = Digest(of: Array(out.utf8))
        memo.remember(key, digest)
        return digest == existing.digest ? nil : out
    }

    /// The key of one render: the templates, the kind of file, the values in a canonical
    /// order (each string length-prefixed, so no two inputs write the same bytes), and what
    /// else the render reads. nil when a value is of a type this does not know how to
    /// write down (then the file is rendered every time).
    func memoKey(_ kind: String, _ values: [String: Any], _ extra: [String]) -> Digest? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(2048)
        bytes += fingerprint
        Self.write(kind, into: &bytes)
        guard Self.write(values, into: &bytes) else { return nil }
        for e in extra { Self.write(e, into: &bytes) }
        return Digest(of: bytes)
    }

    private static func write(_ s: String, into bytes: inout [UInt8]) {
        let n = s.utf8.count
        bytes += [UInt8(truncatingIfNeeded: n >> 24), UInt8(truncatingIfNeeded: n >> 16), UInt8(truncatingIfNeeded: n >> 8), UInt8(truncatingIfNeeded: n)]
        bytes += s.utf8
    }

    private static func write(_ values: [String: Any], into bytes: inout [UInt8]) -> Bool {
        bytes.append(UInt8(ascii: "{"))
        for k in values.keys.sorted() {
            write(k, into: &bytes)
            switch values[k]! {
            case let s as String: bytes.append(UInt8(ascii: "s")); write(s, into: &bytes)
            case let b as Bool: bytes += [UInt8(ascii: "b"), b ? 1 : 0]
            case let i as Int: bytes.append(UInt8(ascii: "i")); write(String(i), into: &bytes)
            case let a as [String]:
                bytes.append(UInt8(ascii: "a")); write(String(a.count), into: &bytes)
                for s in a { write(s, into: &bytes) }
            case let d as [String: Any]:
                guard write(d, into: &bytes) else { return false }
            default:
                return false
            }
        }
        bytes.append(UInt8(ascii: "}"))
        return true
    }
}
