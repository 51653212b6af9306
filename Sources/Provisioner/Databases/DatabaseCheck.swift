import Foundation
import GRDB

extension HealthCheck {
    /// The tenant's database user signs in and runs `SELECT 1`.
    public static let database: HealthCheck = "database"
}

/// The tenant's database account signs in with its credentials file, as its PHP would,
/// and runs `SELECT 1`; only for tenants whose database is wanted. Sign-ins block: they
/// run on the sweep's own threads, so a slow server queues them there and nowhere else.
struct DatabaseCheck: TenantCheck {
    var id: HealthCheck { .database }

    func prepare(_ s: SweepContext) async throws -> Set<String> {
        try await s.off { [store = s.engine.store] in
            try store.queue.read { db in Set(try TenantDatabase.byCode(db).values.filter { $0.desired == .present }.map(\.code)) }
        }
    }

    func check(_ t: Tenant, _ wanted: Set<String>, _ s: SweepContext) async -> CheckOutcome? {
        guard wanted.contains(t.code) else { return nil }
        let home = t.home(s.config)
        let timeout = UInt32(max(1, s.settings.timeout.rounded(.up)))
        let clock = ContinuousClock()
        let start = clock.now
        var o: CheckOutcome
        do {
            o = try await s.off { () -> CheckOutcome in
                guard let creds = DatabaseCredentials.read(home: home) else {
                    return CheckOutcome(.database, .down, "no readable credentials file \(home)/\(DatabasesCapability.credentialsFile)")
                }
                let conn = try MariaDBConnection(address: creds.address, user: creds.user, password: creds.password,
                                                 database: creds.database, timeout: timeout, readTimeout: timeout)
                guard try conn.scalar(SQL("SELECT 1")) == "1" else {
                    return CheckOutcome(.database, .down, "SELECT 1 did not answer 1")
                }
                return CheckOutcome(.database, .ok)
            }
        } catch {
            o = CheckOutcome(.database, .down, HealthSweep.message(error))
        }
        o.duration = clock.now - start
        return o
    }
}
