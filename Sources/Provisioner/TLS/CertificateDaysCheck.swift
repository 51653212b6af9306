import Foundation
import GRDB

extension HealthCheck {
    /// Days left on the certificate served for the tenant's names.
    public static let certificate: HealthCheck = "certificate"
}

/// The certificates as one sweep sees them, read once and shared by the checks that need
/// them (http and https in Vhosts/, certificate here): the records, which of their files
/// exist, and what each tenant serves.
public struct TLSSweepView: Sendable {
    public var certificates: [CertRecord]
    /// Certificate files that exist (each record's chain and key).
    public var present: Set<String>
    /// What each tenant serves over HTTPS, by code.
    public var serving: [String: [TLSServe]]

    public static func of(_ s: SweepContext) async throws -> TLSSweepView {
        try await s.shared("tls") {
            try await s.off { [engine = s.engine, tenants = s.tenants, aliases = s.aliases, now = s.now] in
                try of(engine.store.queue.read { try CertStore.records($0) }, config: engine.config, tenants: tenants,
                       aliases: aliases, now: now)
            }
        }
    }

    /// The view of these records now: which files exist, and what each tenant serves.
    static func of(_ certs: [CertRecord], config c: Config, tenants: [Tenant], aliases: [String: [String]], now: Date) -> TLSSweepView {
        let present = Set(certs.filter(\.hasCertificate).flatMap { [$0.chainPath(c), $0.keyPath(c)] }.filter {
            FileManager.default.fileExists(atPath: $0)
        })
        let serving = CertStore.serving(certs, tenants: tenants, aliases: aliases, config: c, now: now,
                                        fileExists: { present.contains($0) })
        return TLSSweepView(certificates: certs, present: present, serving: serving)
    }
}

/// Days left on the certificates serving the tenant's names; expired or missing for its
/// primary name is down, fewer than `health.certificate_warning_days` left or an alias
/// not covered is degraded. Its value is the days left (the metric
/// `desa_certificate_days_left`).
struct CertificateDaysCheck: TenantCheck {
    var id: HealthCheck { .certificate }

    func prepare(_ s: SweepContext) async throws -> TLSSweepView { try await TLSSweepView.of(s) }

    func check(_ t: Tenant, _ v: TLSSweepView, _ s: SweepContext) async -> CheckOutcome? {
        Self.judge(t, v, aliases: s.aliases[t.code] ?? [], config: s.config, now: s.now,
                   warningDays: s.settings.certificateWarningDays, enabled: s.config.tls.enabled)
    }

    static func judge(_ t: Tenant, _ v: TLSSweepView, aliases: [String], config: Config, now: Date, warningDays: Int,
                      enabled: Bool) -> CheckOutcome? {
        let primary = t.primaryDomain(config)
        let names = [primary] + aliases
        let mine = v.certificates.filter { r in
            r.hasCertificate && (r.members.isEmpty || r.members.contains(t.code)) && names.contains { r.covers($0) }
        }
        guard enabled || !mine.isEmpty else { return nil }
        let valid = mine.filter { $0.isValid(at: now) && v.present.contains($0.chainPath(config)) }
        guard !valid.isEmpty || !mine.isEmpty else {
            return CheckOutcome(.certificate, .degraded, "no certificate yet for \(primary) (desactl cert issue \(t.slug))")
        }
        let serving = valid.filter { $0.covers(primary) }
        guard let best = serving.max(by: { $0.notAfter! < $1.notAfter! }) else {
            if let expired = mine.filter({ $0.covers(primary) }).max(by: { $0.notAfter! < $1.notAfter! }), expired.notAfter! <= now {
                return CheckOutcome(.certificate, .down, "certificate \(expired.id) for \(primary) expired at \(Timestamp.format(expired.notAfter!))",
                                    value: 0)
            }
            return CheckOutcome(.certificate, .down, "no valid certificate covers \(primary)")
        }
        let days = best.notAfter!.timeIntervalSince(now) / 86_400
        let uncovered = names.filter { n in !valid.contains { $0.covers(n) } }
        if days < Double(warningDays) {
            return CheckOutcome(.certificate, .degraded, String(format: "certificate \(best.id) has %.1f days left (expires \(Timestamp.format(best.notAfter!)))", days),
                                value: days)
        }
        if !uncovered.isEmpty {
            return CheckOutcome(.certificate, .degraded, "not covered: " + uncovered.joined(separator: ", "), value: days)
        }
        return CheckOutcome(.certificate, .ok, value: days)
    }
}
