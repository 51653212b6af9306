import Foundation

/// Each tenant's Linux user, declared in one sysusers.d file and created in one
/// `systemd-sysusers` batch; removed with `userdel` when the tenant is deleted. Only a
/// user desa created (the tenant's UID and home) is ever ours: a user of the same name
/// with another UID or home fails the tenant and is never changed or deleted.
public struct UsersCapability: Capability {
    public struct Observation: Sendable {
        public var users: [String: SystemUser]
        public var declaration: String?
    }

    public init() {}
    public var name: String { "users" }

    public func observe(_ d: DesiredState, _ host: Observing) throws -> Observation {
        Observation(users: try host.users(prefix: d.config.userPrefix), declaration: host.read(d.config.sysusersFile))
    }

    static func spec(_ t: Tenant, _ config: Config) -> UserSpec {
        UserSpec(name: t.userName(prefix: config.userPrefix), uid: t.uid, home: t.home(config), comment: "\(t.kind.rawValue) \(t.name)")
    }

    public func plan(_ d: DesiredState, _ seen: Observation) throws -> CapabilityPlan {
        var out = CapabilityPlan()
        let config = d.config
        var names = Set<String>()
        var live: [UserSpec] = []
        for t in d.tenants {
            let spec = Self.spec(t, config)
            names.insert(spec.name)
            let existing = seen.users[spec.name]
            let ours = t.isOwnUser(existing, config)
            if t.desired == .deleted {
                if ours { out.steps.append(Step(t.code, "delete-user", .userRemoval, .custom(DeleteUser(name: spec.name)))) }
                continue
            }
            live.append(spec)
            if let u = existing, !ours {
                out.steps.append(.fail(t.code, "user \(u.name) exists with UID \(u.uid) and home \(u.home), but desa made it with UID \(t.uid) and home \(spec.home); desa never takes over or changes a user it did not create: remove or rename that user, then desactl apply"))
            } else if existing == nil {
                out.steps.append(Step(t.code, "create-user", .users, .user(spec)))
            }
        }
        let declaration = Users.sysusersText(live, group: Users.tenantsGroup(prefix: config.userPrefix))
        // No declaration is needed until there is a user to declare.
        if declaration != seen.declaration && !(live.isEmpty && seen.declaration == nil) {
            out.steps.insert(Step(nil, seen.declaration == nil ? "create-sysusers" : "update-sysusers", .users,
                                  .userBatch(UserBatch(file: config.sysusersFile, content: declaration))), at: 0)
        }
        for name in seen.users.keys.sorted() where !names.contains(name) {
            if d.removeUnknown {
                out.steps.append(Step(nil, "delete-user", .userRemoval, .custom(DeleteUser(name: name))))
            } else {
                out.unknown.append("user \(name) (uid \(seen.users[name]!.uid))")
            }
        }
        return out
    }
}

/// Removes a user and its private group, waiting a little for php-fpm to wind down the
/// pool's last worker.
struct DeleteUser: CustomEffect {
    var name: String
    var subject: String { name }

    func run(_ context: ApplyContext) throws {
        var attempt = 0
        while true {
            do { try context.users.delete(name); return } catch let e as DesaError {
                attempt += 1
                if attempt > 20 { throw e }
                context.clock.sleep(0.1)
            }
        }
    }
}
