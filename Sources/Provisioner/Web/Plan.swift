/// A directory the control plane keeps with a given owner, group and mode.
public struct DirSpec: Sendable, Equatable {
    public var path: String
    public var uid: Int
    public var gid: Int
    public var mode: Int
}

/// A regular file the control plane keeps with a given owner, group and mode, creating
/// it empty when missing (log files that root-run masters append to).
public struct FileSpec: Sendable, Equatable {
    public var path: String
    public var uid: Int
    public var gid: Int
    public var mode: Int
}

/// The service a config file belongs to: one reload per service per batch.
public enum ServiceRef: Hashable, Sendable, Comparable, CustomStringConvertible {
    case nginx
    case php(String)
    public var description: String {
        switch self {
        case .nginx: return "nginx"
        case .php(let v): return "php\(v)-fpm"
        }
    }
}

/// One typed step of a plan. `tenant` is the village code it belongs to, if any.
public enum Action: Sendable, Equatable {
    case ensureDirectory(tenant: String?, DirSpec, exists: Bool)
    case createUser(tenant: String, UserSpec)
    case ensureFile(tenant: String, FileSpec, exists: Bool)
    /// A convenience link in the home (`logs` -> the tenant's log directory); made only
    /// where the tenant has nothing of that name.
    case createLink(tenant: String, path: String, target: String)
    case writeStarterPage(tenant: String, path: String, content: String, uid: Int, gid: Int)
    case writeConfig(tenant: String, path: String, content: String, service: ServiceRef, isNew: Bool)
    case removeConfig(tenant: String?, path: String, service: ServiceRef)
    case deleteUser(tenant: String?, name: String)
    case archiveHome(tenant: String, home: String, to: String)
    case purgeHome(tenant: String, home: String)
    /// End every process running with the tenant's UID (a suspended or deleted tenant runs nothing).
    case stopProcesses(tenant: String, uid: Int, gid: Int, count: Int)
    /// Check that the tenant serves as it should, then record its status.
    case verify(tenant: String, expect: Tenant.Status)
    /// The tenant cannot be converged (its template does not render, a file is not ours).
    case fail(tenant: String, reason: String)

    public var tenant: String? {
        switch self {
        case .ensureDirectory(let t, _, _), .removeConfig(let t, _, _), .deleteUser(let t, _): return t
        case .createUser(let t, _), .writeStarterPage(let t, _, _, _, _), .writeConfig(let t, _, _, _, _),
             .archiveHome(let t, _, _), .purgeHome(let t, _), .verify(let t, _), .fail(let t, _),
             .ensureFile(let t, _, _), .createLink(let t, _, _), .stopProcesses(let t, _, _, _): return t
        }
    }

    public var op: String {
        switch self {
        case .ensureDirectory(_, _, let exists): return exists ? "fix-directory" : "create-directory"
        case .createUser: return "create-user"
        case .ensureFile(_, _, let exists): return exists ? "fix-file" : "create-file"
        case .createLink: return "create-link"
        case .stopProcesses: return "stop-processes"
        case .writeStarterPage: return "write-starter-page"
        case .writeConfig(_, _, _, _, let isNew): return isNew ? "create-config" : "update-config"
        case .removeConfig: return "remove-config"
        case .deleteUser: return "delete-user"
        case .archiveHome: return "archive-home"
        case .purgeHome: return "purge-home"
        case .verify: return "verify"
        case .fail: return "fail"
        }
    }

    /// The path or name the action is about.
    public var subject: String {
        switch self {
        case .ensureDirectory(_, let d, _): return d.path
        case .createUser(_, let u): return "\(u.name) uid \(u.uid)"
        case .ensureFile(_, let f, _): return f.path
        case .createLink(_, let p, let target): return "\(p) -> \(target)"
        case .stopProcesses(_, let uid, _, let n): return "uid \(uid): \(n == 1 ? "1 process" : "\(n) processes")"
        case .writeStarterPage(_, let p, _, _, _), .writeConfig(_, let p, _, _, _), .removeConfig(_, let p, _): return p
        case .deleteUser(_, let n): return n
        case .archiveHome(_, let h, let to): return "\(h) -> \(to)"
        case .purgeHome(_, let h): return h
        case .verify(_, let s): return "expect \(s.rawValue)"
        case .fail(_, let r): return r
        }
    }

    var service: ServiceRef? {
        switch self {
        case .writeConfig(_, _, _, let s, _), .removeConfig(_, _, let s): return s
        default: return nil
        }
    }
}

/// What apply would do: a list of typed actions. Empty on a converged server.
public struct Plan: Sendable, Equatable {
    public var actions: [Action]
    /// Managed objects on the server that the state database does not know (users of
    /// desa's prefix, configs with desa's header). Never removed unless asked: an empty
    /// or foreign database must not tear the server down.
    public var unknown: [String] = []

    public init(actions: [Action] = [], unknown: [String] = []) { self.actions = actions; self.unknown = unknown }

    public var isEmpty: Bool { actions.isEmpty && unknown.isEmpty }

    /// The services whose configuration changes, each reloaded once.
    public var reloads: [ServiceRef] { Array(Set(actions.compactMap(\.service))).sorted() }

    public func actions(for tenant: String) -> [Action] { actions.filter { $0.tenant == tenant } }

    /// One line per action, for people.
    public func lines(slugs: [String: String]) -> [String] {
        var out: [String] = []
        for a in actions {
            let who = a.tenant.map { slugs[$0].map { s in "\(s) (\(a.tenant!))" } ?? $0 } ?? "server"
            out.append("\(a.op.padding(toLength: 19, withPad: " ", startingAt: 0)) \(who): \(a.subject)")
        }
        for r in reloads { out.append("reload              \(r)") }
        for u in unknown { out.append("unknown             \(u)") }
        return out
    }
}
