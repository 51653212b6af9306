import Foundation

extension HealthCheck {
    /// The vhost answers through the local nginx with its own `Host:`.
    public static let http: HealthCheck = "http"
    /// The same over HTTPS with SNI, the chain and the name verified.
    public static let https: HealthCheck = "https"
}

/// The tenant's vhost answers through the local nginx: 200 (a redirect to HTTPS when its
/// name is served over HTTPS; 503 while suspended), and not from nginx's default server.
struct HTTPCheck: TenantCheck {
    struct Prepared: Sendable {
        var address: ProbeAddress?
        var tls: TLSSweepView
        /// What nginx's default server answers a name no vhost has: a village whose own
        /// vhost is gone gets exactly that, which may well be a 200.
        var catchAll: (status: Int, body: String)?
    }

    var id: HealthCheck { .http }

    func prepare(_ s: SweepContext) async throws -> Prepared {
        let address = ProbeAddress(s.config.nginx.probe)
        var catchAll: (status: Int, body: String)?
        if let address {
            let r = await s.probes.http(address, host: "desa-health-check.invalid")
            if case .answered(let status) = r.outcome, !r.body.isEmpty { catchAll = (status, r.body) }
        }
        return Prepared(address: address, tls: try await TLSSweepView.of(s), catchAll: catchAll)
    }

    func check(_ t: Tenant, _ p: Prepared, _ s: SweepContext) async -> CheckOutcome? {
        guard let address = p.address else {
            return CheckOutcome(.http, .down, "nginx.probe \(s.config.nginx.probe) is not an address")
        }
        let host = t.primaryDomain(s.config)
        let suspended = t.desired == .suspended
        let redirects = (p.tls.serving[t.code] ?? []).contains { $0.names.contains(host) }
        let r = await s.probes.http(address, host: host)
        if let catchAll = p.catchAll, case .answered(catchAll.status) = r.outcome, r.body == catchAll.body {
            return CheckOutcome(.http, .down, "HTTP \(catchAll.status) from nginx's default server, not the village's vhost (is its vhost missing?)",
                                duration: r.elapsed)
        }
        return HealthSweep.judge(.http, r, expected: suspended ? 503 : (redirects ? 301 : 200), suspended: suspended)
    }
}

/// The tenant's primary name over HTTPS, with SNI, the chain verified against
/// `tls.trusted_roots` (or the system's) and the name; only for names served over HTTPS.
struct HTTPSCheck: TenantCheck {
    var id: HealthCheck { .https }

    func prepare(_ s: SweepContext) async throws -> TLSSweepView { try await TLSSweepView.of(s) }

    func check(_ t: Tenant, _ v: TLSSweepView, _ s: SweepContext) async -> CheckOutcome? {
        let host = t.primaryDomain(s.config)
        guard (v.serving[t.code] ?? []).contains(where: { $0.names.contains(host) }) else { return nil }
        let suspended = t.desired == .suspended
        let listen = s.config.tls.listen
        let address = ProbeAddress(listen.contains(":") ? listen : "127.0.0.1:\(listen)") ?? ProbeAddress("127.0.0.1:443")!
        let r = await s.probes.https(address, host: host, trustRoots: s.config.tls.trustedRoots)
        return HealthSweep.judge(.https, r, expected: suspended ? 503 : 200, suspended: suspended)
    }
}
