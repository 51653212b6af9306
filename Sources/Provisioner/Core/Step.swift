import Foundation

/// When a step runs. Apply goes through the phases in this order; within a phase the
/// server's steps come first, then the tenants' in plan order. A quota's mount comes
/// before the chown of the home it holds; processes end, and a mounted home is
/// unmounted, before the home is archived; users go last.
public enum Phase: Int, Sendable, CaseIterable, Comparable, CustomStringConvertible {
    case users, mounts, directories, files, verify, stop, unmount, archive, userRemoval

    public static func < (a: Phase, b: Phase) -> Bool { a.rawValue < b.rawValue }

    public var description: String {
        switch self {
        case .users: return "users"
        case .mounts: return "mounts"
        case .directories: return "directories"
        case .files: return "files"
        case .verify: return "verify"
        case .stop: return "stop"
        case .unmount: return "unmount"
        case .archive: return "archive"
        case .userRemoval: return "user-removal"
        }
    }
}

/// A directory kept with a given owner, group and mode.
public struct DirSpec: Sendable, Hashable {
    public var path: String
    public var uid: Int
    public var gid: Int
    public var mode: Int
    public init(path: String, uid: Int, gid: Int, mode: Int) { self.path = path; self.uid = uid; self.gid = gid; self.mode = mode }
}

/// A regular file kept with a given owner, group and mode, created empty when missing
/// (log files that root-run masters append to).
public struct FileSpec: Sendable, Hashable {
    public var path: String
    public var uid: Int
    public var gid: Int
    public var mode: Int
    public init(path: String, uid: Int, gid: Int, mode: Int) { self.path = path; self.uid = uid; self.gid = gid; self.mode = mode }
}

/// A file whose content is written into a tenant's home (the starter page), by
/// descriptor, owned by the tenant. Nothing checks or reloads it.
public struct ContentSpec: Sendable, Hashable {
    public var path: String
    public var content: String
    public var uid: Int
    public var gid: Int
    public var mode: Int
}

/// A configuration file that belongs to a service: written atomically (or removed),
/// remembered in the rollback journal, checked by the service's checker, and put into
/// effect by one reload of the service per batch.
public struct ManagedFile: Sendable, Hashable {
    public var path: String
    /// The new content; nil removes the file.
    public var content: String?
    /// The name of the `ServiceSpec` that reads the file.
    public var service: String
    public var mode: Int = 0o644
    /// Text that, in a checker's complaint, points at this file's tenant besides the
    /// file's path (a path in the tenant's home, `[pool NAME]`).
    public var blame: [String] = []
    public init(path: String, content: String?, service: String, mode: Int = 0o644, blame: [String] = []) {
        self.path = path; self.content = content; self.service = service; self.mode = mode; self.blame = blame
    }
}

/// A user to create (name, UID = GID of its own group, home, description).
public struct UserSpec: Sendable, Hashable {
    public var name: String
    public var uid: Int
    public var home: String
    public var comment: String
    public init(name: String, uid: Int, home: String, comment: String) {
        self.name = name; self.uid = uid; self.home = home; self.comment = comment
    }
}

/// The declaration every user creation of a batch goes through: the whole sysusers.d
/// file, rewritten, then `systemd-sysusers FILE` once.
public struct UserBatch: Sendable, Hashable {
    public var file: String
    public var content: String
}

/// One thing verification asks of a tenant.
public enum Probe: Sendable, Hashable {
    /// An HTTP GET of `/` with `Host: host` on `address`: serving (an answer below 500,
    /// not 421) or suspended (503).
    case http(host: String, address: String, expect: Tenant.Status)
    /// Something accepts connections on this Unix socket (a PHP-FPM pool).
    case socket(path: String)

    var subject: String {
        switch self {
        case .http(let host, let address, _): return "http://\(host)/ via \(address)"
        case .socket(let path): return path
        }
    }
}

/// Check that a tenant serves as it should, then record `expect` as its status.
public struct Verification: Sendable, Hashable {
    public var expect: Tenant.Status
    public var probes: [Probe]
}

/// What a capability adds to the closed set of effects: an operation it defines, with
/// its executor (`run`). Plans compare operations by value.
public protocol CustomEffect: Sendable, Hashable {
    /// What the operation is about, for people (`uid 310000: 2 processes`).
    var subject: String { get }
    /// Carries the operation out. Any error fails the step's tenant (or, for a server
    /// step, the whole command).
    func run(_ context: ApplyContext) throws
}

/// The effects apply knows how to carry out. Capabilities compose them; an effect kind
/// of their own comes as an `CustomEffect` with its executor.
public enum Effect: Sendable, Equatable {
    case directory(DirSpec)
    case file(FileSpec)
    /// A convenience link, made only where nothing has the name (the tenant may remove it).
    case link(path: String, target: String)
    case content(ContentSpec)
    case managed(ManagedFile)
    case userBatch(UserBatch)
    case user(UserSpec)
    case verify(Verification)
    case custom(any CustomEffect)
    /// The tenant cannot be converged (a template does not render, a file is not ours).
    case fail(String)

    public static func == (a: Effect, b: Effect) -> Bool {
        switch (a, b) {
        case (.directory(let x), .directory(let y)): return x == y
        case (.file(let x), .file(let y)): return x == y
        case (.link(let p, let t), .link(let q, let u)): return p == q && t == u
        case (.content(let x), .content(let y)): return x == y
        case (.managed(let x), .managed(let y)): return x == y
        case (.userBatch(let x), .userBatch(let y)): return x == y
        case (.user(let x), .user(let y)): return x == y
        case (.verify(let x), .verify(let y)): return x == y
        case (.custom(let x), .custom(let y)): return AnyHashable(x) == AnyHashable(y)
        case (.fail(let x), .fail(let y)): return x == y
        default: return false
        }
    }

    /// The path or name the effect is about.
    var subject: String {
        switch self {
        case .directory(let d): return d.path
        case .file(let f): return f.path
        case .link(let p, let target): return "\(p) -> \(target)"
        case .content(let c): return c.path
        case .managed(let m): return m.path
        case .userBatch(let b): return b.file
        case .user(let u): return "\(u.name) uid \(u.uid)"
        case .verify(let v): return "expect \(v.expect.rawValue)"
        case .custom(let o): return o.subject
        case .fail(let r): return r
        }
    }

    /// The effect's fields, for `plan --json`.
    var json: JSON {
        switch self {
        case .directory(let d): return .object([("kind", .string("directory")), ("path", .string(d.path)), ("uid", .int(d.uid)), ("gid", .int(d.gid)), ("mode", .string(String(d.mode, radix: 8)))])
        case .file(let f): return .object([("kind", .string("file")), ("path", .string(f.path)), ("uid", .int(f.uid)), ("gid", .int(f.gid)), ("mode", .string(String(f.mode, radix: 8)))])
        case .link(let p, let t): return .object([("kind", .string("link")), ("path", .string(p)), ("target", .string(t))])
        case .content(let c): return .object([("kind", .string("content")), ("path", .string(c.path)), ("uid", .int(c.uid)), ("gid", .int(c.gid)), ("mode", .string(String(c.mode, radix: 8)))])
        case .managed(let m): return .object([("kind", .string(m.content == nil ? "removed-file" : "managed-file")), ("path", .string(m.path)), ("service", .string(m.service))])
        case .userBatch(let b): return .object([("kind", .string("user-batch")), ("file", .string(b.file))])
        case .user(let u): return .object([("kind", .string("user")), ("name", .string(u.name)), ("uid", .int(u.uid)), ("home", .string(u.home))])
        case .verify(let v): return .object([("kind", .string("verify")), ("expect", .string(v.expect.rawValue)),
                                             ("probes", .array(v.probes.map { .string($0.subject) }))])
        case .custom(let o): return .object([("kind", .string("custom")), ("subject", .string(o.subject))])
        case .fail(let r): return .object([("kind", .string("fail")), ("reason", .string(r))])
        }
    }
}

/// One step of a plan: whose it is (a village code, or nil for the server), what it is
/// called, when it runs and what it does.
public struct Step: Sendable, Equatable {
    public var tenant: String?
    public var op: String
    public var phase: Phase
    public var effect: Effect

    public init(_ tenant: String?, _ op: String, _ phase: Phase, _ effect: Effect) {
        self.tenant = tenant; self.op = op; self.phase = phase; self.effect = effect
    }

    public var subject: String { effect.subject }

    /// The service whose configuration the step changes, if any.
    public var service: String? { if case .managed(let m) = effect { return m.service }; return nil }

    public static func fail(_ tenant: String, _ reason: String) -> Step { Step(tenant, "fail", .directories, .fail(reason)) }
}

extension Step {
    /// A step that makes the directory as specified, or nil when it already is.
    public static func ensure(_ d: DirSpec, _ tenant: String?, _ stats: [String: FileStat]) -> Step? {
        guard let st = stats[d.path] else { return Step(tenant, "create-directory", .directories, .directory(d)) }
        if !st.isDirectory || st.uid != d.uid || st.gid != d.gid || st.mode != d.mode {
            return Step(tenant, "fix-directory", .directories, .directory(d))
        }
        return nil
    }

    /// The steps that make each directory as specified, in order.
    public static func ensure(_ dirs: [DirSpec], _ tenant: String?, _ stats: [String: FileStat]) -> [Step] {
        dirs.compactMap { ensure($0, tenant, stats) }
    }

    /// A step that makes the file (empty if missing) as specified, or nil when it already is.
    public static func ensure(_ f: FileSpec, _ tenant: String?, _ stats: [String: FileStat]) -> Step? {
        guard let st = stats[f.path] else { return Step(tenant, "create-file", .directories, .file(f)) }
        if st.isDirectory || st.uid != f.uid || st.gid != f.gid || st.mode != f.mode {
            return Step(tenant, "fix-file", .directories, .file(f))
        }
        return nil
    }

    /// The step that puts a managed file's wanted content in place, or nil when it is
    /// there; a fail step when the file is someone else's (no desa header for `tenant`).
    public static func write(_ path: String, _ content: String, service: String, tenant: String, existing: String?,
                             blame: [String] = []) -> Step? {
        write(path, content, service: service, tenant: tenant, existing: existing.map { SeenFile($0) }, blame: blame)
    }

    public static func write(_ path: String, _ content: String, service: String, tenant: String, existing: SeenFile?,
                             blame: [String] = []) -> Step? {
        if let existing, existing.owner != tenant {
            return .fail(tenant, "\(path) exists and is not managed by desa for this tenant; refusing to overwrite it")
        }
        if let existing, existing.holds(content) { return nil }
        return Step(tenant, existing == nil ? "create-config" : "update-config", .files,
                    .managed(ManagedFile(path: path, content: content, service: service, blame: blame)))
    }
}

/// The managed files of a capability that no wanted file accounts for: a known
/// tenant's are removed (as that tenant's steps), an unknown tenant's are reported
/// unless their removal was asked for. Files without desa's header are never touched.
public func orphanSteps(_ files: [String: String], service: String, known: Set<String>, removeUnknown: Bool,
                        into out: inout CapabilityPlan) {
    orphanSteps(files.mapValues { SeenFile($0) }, service: service, known: known, removeUnknown: removeUnknown, into: &out)
}

public func orphanSteps(_ files: [String: SeenFile], service: String, known: Set<String>, removeUnknown: Bool,
                        into out: inout CapabilityPlan) {
    for (path, seen) in files.sorted(by: { $0.key < $1.key }) {
        guard let owner = seen.owner else { continue }
        guard known.contains(owner) || removeUnknown else {
            out.unknown.append("config \(path) of tenant \(owner)"); continue
        }
        out.steps.append(Step(known.contains(owner) ? owner : nil, "remove-config", .files,
                              .managed(ManagedFile(path: path, content: nil, service: service))))
    }
}
