import Foundation
import Prometheus

/// What desa-agent tells Prometheus: tenants per health state, how long checks and sweeps
/// take, and how many days each tenant's certificate has left. Safe to call from any
/// thread; `exposition()` is what `GET /metrics` returns.
///
/// Series:
/// - `desa_tenants{state="ok|degraded|down"}` (gauge, all three always present)
/// - `desa_check_duration_seconds{check="http|https|php|certificate|database|drift"}` (histogram)
/// - `desa_certificate_days_left{tenant="SLUG"}` (gauge, one per tenant with a certificate)
/// - `desa_sweep_duration_seconds` (gauge, the last sweep), `desa_sweeps_total` (counter),
///   `desa_last_sweep_timestamp_seconds` (gauge, Unix time the last sweep ended)
public final class AgentMetrics: Sendable {
    /// The health states, always emitted (0 when no tenant is in one).
    public static let states = ["ok", "degraded", "down"]
    /// Buckets of the check histogram: 5 ms to 10 s (a check times out at `health.timeout`).
    static let checkBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]

    /// The metric families (names and HELP texts). `MetricNameDescriptor` is not marked
    /// Sendable, though it holds only `let` strings.
    nonisolated(unsafe) static let names = (
        tenants: MetricNameDescriptor(namespace: "desa", metricName: "tenants", unitName: "",
                                      helpText: "Tenants in each health state after the last sweep."),
        check: MetricNameDescriptor(namespace: "desa", metricName: "check_duration", unitName: "seconds",
                                    helpText: "How long one health check of one tenant took, by kind of check."),
        certificate: MetricNameDescriptor(namespace: "desa", metricName: "certificate_days_left", unitName: "",
                                          helpText: "Days until the certificate a tenant serves expires (negative: expired)."),
        sweep: MetricNameDescriptor(namespace: "desa", metricName: "sweep_duration", unitName: "seconds",
                                    helpText: "Wall time of the last health sweep over all tenants."),
        sweeps: MetricNameDescriptor(namespace: "desa", metricName: "sweeps", unitName: "total",
                                     helpText: "Health sweeps completed since the agent started."),
        lastSweep: MetricNameDescriptor(namespace: "desa", metricName: "last_sweep_timestamp", unitName: "seconds",
                                        helpText: "Unix time at which the last health sweep ended.")
    )

    private let registry = PrometheusCollectorRegistry()
    private let tenants: [String: Gauge]
    private let sweepDuration: Gauge
    private let sweeps: Counter
    private let lastSweep: Gauge
    /// One gauge per tenant slug; guarded by `lock` with the registry calls that add and
    /// remove them, so a set and a removal of one slug never interleave.
    nonisolated(unsafe) private var certificates: [String: Gauge] = [:]
    private let lock = NSLock()

    public init() {
        var t: [String: Gauge] = [:]
        for s in Self.states {
            let g = registry.makeGauge(descriptor: Self.names.tenants, labels: [("state", s)])
            g.set(0.0)
            t[s] = g
        }
        tenants = t
        sweepDuration = registry.makeGauge(descriptor: Self.names.sweep)
        sweeps = registry.makeCounter(descriptor: Self.names.sweeps)
        lastSweep = registry.makeGauge(descriptor: Self.names.lastSweep)
    }

    /// After each sweep: how many tenants are in each state ("ok", "degraded", "down"), the
    /// sweep's wall time. A state left out of `tenantsByState` counts 0.
    public func recordSweep(duration: Duration, tenantsByState: [String: Int]) {
        for (state, gauge) in tenants {
            gauge.set(Double(tenantsByState[state] ?? 0))
        }
        sweepDuration.set(Self.seconds(duration))
        lastSweep.set(Date().timeIntervalSince1970)
        sweeps.increment()
    }

    /// One check's duration, labelled by check kind ("http", "https", "php", "certificate",
    /// "database", "drift").
    public func observeCheck(_ check: String, duration: Duration) {
        // The registry returns the existing histogram for a known label set.
        registry.makeDurationHistogram(descriptor: Self.names.check, labels: [("check", check)],
                                       buckets: Self.checkBuckets)
            .record(duration)
    }

    /// Certificate days left per tenant slug; nil removes the series (tenant deleted or has
    /// no certificate).
    public func setCertificateDaysLeft(slug: String, days: Double?) {
        lock.withLock {
            if let days {
                let gauge = certificates[slug] ?? registry.makeGauge(
                    descriptor: Self.names.certificate, labels: [("tenant", slug)])
                certificates[slug] = gauge
                gauge.set(days)
            } else if let gauge = certificates.removeValue(forKey: slug) {
                registry.unregisterGauge(gauge)
            }
        }
    }

    /// The slugs that have a certificate series now.
    public var certificateSlugs: Set<String> {
        lock.withLock { Set(certificates.keys) }
    }

    /// The Prometheus text exposition format (what GET /metrics returns).
    public func exposition() -> String {
        registry.emitToString()
    }

    static func seconds(_ d: Duration) -> Double {
        let c = d.components
        return Double(c.seconds) + Double(c.attoseconds) / 1e18
    }
}
