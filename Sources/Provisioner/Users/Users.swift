import Foundation

public struct SystemUser: Sendable, Equatable {
    public var name: String
    public var uid: Int
    public var gid: Int
    public var home: String
}

/// Creates and removes tenant users. Creation is declarative and batched: one
/// `systemd-sysusers FILE` call for any number of users (useradd costs ~10 ms each).
public struct Users: Sendable {
    public var runner: ProcessRunning
    public var passwdFile: String
    public var sysusersFile: String

    public init(runner: ProcessRunning, passwdFile: String, sysusersFile: String) {
        self.runner = runner; self.passwdFile = passwdFile; self.sysusersFile = sysusersFile
    }

    /// Every user in the passwd file.
    public func all() throws -> [SystemUser] {
        guard let text = AtomicFiles.read(passwdFile) else { throw DesaError.system("cannot read \(passwdFile)") }
        return text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: ":", omittingEmptySubsequences: false)
            guard f.count >= 7, let uid = Int(f[2]), let gid = Int(f[3]) else { return nil }
            return SystemUser(name: String(f[0]), uid: uid, gid: gid, home: String(f[5]))
        }
    }

    /// Users that look like this installation's tenants: prefix followed by ten digits.
    public func tenants(prefix: String) throws -> [SystemUser] {
        try all().filter { u in
            u.name.hasPrefix(prefix) && u.name.count == prefix.count + 10
                && u.name.dropFirst(prefix.count).allSatisfy { $0.isASCII && $0.isNumber }
        }
    }

    /// The sysusers.d text for a set of users: `u NAME UID "COMMENT" HOME`.
    /// The declaration of every tenant's user, each also a member of `group` (every tenant
    /// in one group, which world-writable places can be closed to: `QuotaSettings.closedDirs`).
    public static func sysusersText(_ specs: [UserSpec], group: String) -> String {
        var out = "# Managed by desa: tenant users. desactl apply rewrites this file.\n"
        let sorted = specs.sorted(by: { $0.uid < $1.uid })
        if !sorted.isEmpty { out += "g \(group) -\n" }
        for s in sorted {
            let comment = s.comment.filter { $0 != "\"" && $0 != "\\" && !$0.isNewline }
            out += "u \(s.name) \(s.uid) \"\(comment)\" \(s.home) /usr/sbin/nologin\n"
        }
        for s in sorted { out += "m \(s.name) \(group)\n" }
        return out
    }

    /// The group every tenant's user is a member of: `<prefix>-tenants`.
    public static func tenantsGroup(prefix: String) -> String { prefix + "-tenants" }

    /// Lets systemd-sysusers create whichever users of the declaration file are missing.
    public func createDeclared() throws {
        let r = try runner.run(["/usr/bin/systemd-sysusers", sysusersFile])
        if !r.ok { throw DesaError.system("systemd-sysusers failed: \(r.message)") }
    }

    /// Removes a user and its private group. A user already gone is not an error.
    public func delete(_ name: String) throws {
        let r = try runner.run(["/usr/sbin/userdel", name])
        if !r.ok && r.status != 6 { throw DesaError.system("userdel \(name) failed: \(r.message)") }
    }

    public static func gid(ofGroup name: String) throws -> gid_t {
        guard let g = getgrnam(name) else { throw DesaError(.config, "group \(name) does not exist on this machine") }
        return g.pointee.gr_gid
    }
}
