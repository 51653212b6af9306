import Foundation
import GRDB

extension CertificatesCapability: StatusReporting {
    public var statusHeading: String { "Sertifikat" }

    /// Days left on the certificate serving each tenant's primary name, judged as the
    /// certificate check judges it.
    public func statusFacts(_ engine: Engine, tenants: [Tenant], now: Date) throws -> [String: StatusFact] {
        let c = engine.config
        let (certs, aliases) = try engine.store.queue.read { db in (try CertStore.records(db), try Engine.aliases(db)) }
        guard c.tls.enabled || certs.contains(where: \.hasCertificate) else { return [:] }
        let view = TLSSweepView.of(certs, config: c, tenants: tenants, aliases: aliases, now: now)
        var out: [String: StatusFact] = [:]
        for t in tenants {
            guard let o = CertificateDaysCheck.judge(t, view, aliases: aliases[t.code] ?? [], config: c, now: now,
                                                     warningDays: c.health.certificateWarningDays, enabled: c.tls.enabled) else { continue }
            let text = o.value.map { String(format: "%.0f hari lagi", $0.rounded(.down)) } ?? "belum ada"
            out[t.code] = StatusFact(text, o.state)
        }
        return out
    }
}
