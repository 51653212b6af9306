import Foundation
import Prometheus

/// The metrics facet: series a capability owns, named and explained in its own folder.
public protocol MetricsProviding: Capability {
    var metrics: [MetricDefinition] { get }
}

/// A series family a capability brings: one gauge per tenant (label `tenant="SLUG"`),
/// set after each sweep from the value its check measured (`CheckOutcome.value`); a
/// tenant whose check measured nothing (deleted, no certificate) loses its series.
public struct MetricDefinition: Sendable {
    /// Without the `desa_` namespace: `certificate_days_left`.
    public var name: String
    public var help: String
    public var check: HealthCheck
    public init(name: String, help: String, check: HealthCheck) { self.name = name; self.help = help; self.check = check }
}

/// What desa-agent tells Prometheus: tenants per health state, how long checks and sweeps
/// take, the capabilities' own series (`MetricsProviding`: each tenant's certificate days
/// left, ...), and each agent job's runs. Safe to call from any thread; `exposition()` is
/// what `GET /metrics` returns.
///
/// Series:
/// - `desa_tenants{state="ok|degraded|down"}` (gauge, all three always present)
/// - `desa_check_duration_seconds{check="http|https|php|certificate|database|drift|..."}` (histogram)
/// - each capability's `desa_<name>{tenant="SLUG"}` (gauge), e.g. `desa_certificate_days_left`
/// - `desa_sweep_duration_seconds` (gauge, the last sweep), `desa_sweeps_total` (counter),
///   `desa_last_sweep_timestamp_seconds` (gauge, Unix time the last sweep ended)
/// - `desa_job_runs_total{job="NAME",outcome="ok|failed"}` (counter),
///   `desa_job_last_run_timestamp_seconds{job="NAME"}` (gauge, when its last run ended)
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
        sweep: MetricNameDescriptor(namespace: "desa", metricName: "sweep_duration", unitName: "seconds",
                                    helpText: "Wall time of the last health sweep over all tenants."),
        sweeps: MetricNameDescriptor(namespace: "desa", metricName: "sweeps", unitName: "total",
                                     helpText: "Health sweeps completed since the agent started."),
        lastSweep: MetricNameDescriptor(namespace: "desa", metricName: "last_sweep_timestamp", unitName: "seconds",
                                        helpText: "Unix time at which the last health sweep ended."),
        jobRuns: MetricNameDescriptor(namespace: "desa", metricName: "job_runs", unitName: "total",
                                      helpText: "Runs of each agent job since the agent started, by outcome."),
        jobLastRun: MetricNameDescriptor(namespace: "desa", metricName: "job_last_run_timestamp", unitName: "seconds",
                                         helpText: "Unix time at which each agent job's last run ended.")
    )

    private let registry = PrometheusCollectorRegistry()
    private let tenants: [String: Gauge]
    private let sweepDuration: Gauge
    private let sweeps: Counter
    private let lastSweep: Gauge
    /// The capabilities' per-tenant families, by name.
    public let definitions: [MetricDefinition]
    /// Per family, one gauge per tenant slug; guarded by `lock` with the registry calls
    /// that add and remove them, so a set and a removal of one series never interleave.
    nonisolated(unsafe) private var perTenant: [String: [String: Gauge]] = [:]
    private let lock = NSLock()

    /// `definitions`: the capabilities' families (the built-in ones' unless told).
    public init(definitions: [MetricDefinition] = Capabilities.metrics(Capabilities.builtIn)) {
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
        self.definitions = definitions
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

    /// One check's duration, labelled by check kind ("http", "https", "php", ...).
    public func observeCheck(_ check: String, duration: Duration) {
        // The registry returns the existing histogram for a known label set.
        registry.makeDurationHistogram(descriptor: Self.names.check, labels: [("check", check)],
                                       buckets: Self.checkBuckets)
            .record(duration)
    }

    /// A tenant's value in the family `name` (a `MetricDefinition`'s); nil removes the
    /// series (tenant deleted, nothing measured).
    public func setTenantValue(_ name: String, slug: String, _ value: Double?) {
        guard let def = definitions.first(where: { $0.name == name }) else { return }
        lock.withLock {
            if let value {
                let gauge = perTenant[name]?[slug] ?? registry.makeGauge(
                    descriptor: MetricNameDescriptor(namespace: "desa", metricName: def.name, unitName: "", helpText: def.help),
                    labels: [("tenant", slug)])
                perTenant[name, default: [:]][slug] = gauge
                gauge.set(value)
            } else if let gauge = perTenant[name]?.removeValue(forKey: slug) {
                registry.unregisterGauge(gauge)
            }
        }
    }

    /// The slugs that have a series in the family `name` now.
    public func slugs(_ name: String) -> Set<String> {
        lock.withLock { Set(perTenant[name]?.keys ?? [:].keys) }
    }

    /// A sweep's figures: tenants by state, each check's duration, and each capability's
    /// per-tenant values (tenants gone or without a value lose their series).
    public func record(_ r: SweepResult) {
        var byState: [String: Int] = [:]
        for (state, n) in r.counts { byState[state.rawValue] = n }
        recordSweep(duration: r.duration, tenantsByState: byState)
        for t in r.tenants {
            for o in t.outcomes where o.duration > .zero { observeCheck(o.check.rawValue, duration: o.duration) }
        }
        for def in definitions {
            var measured = Set<String>()
            for t in r.tenants {
                if let v = t.value(of: def.check) {
                    setTenantValue(def.name, slug: t.slug, v)
                    measured.insert(t.slug)
                }
            }
            for slug in slugs(def.name).subtracting(measured) { setTenantValue(def.name, slug: slug, nil) }
        }
    }

    /// A run of an agent job ended.
    public func recordJob(_ name: String, ok: Bool) {
        registry.makeCounter(descriptor: Self.names.jobRuns, labels: [("job", name), ("outcome", ok ? "ok" : "failed")]).increment()
        registry.makeGauge(descriptor: Self.names.jobLastRun, labels: [("job", name)]).set(Date().timeIntervalSince1970)
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
