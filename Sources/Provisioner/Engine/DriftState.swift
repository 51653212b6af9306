/// What the agent says after a drift round. Values only: `DriftWatch` turns them into
/// log lines and journal entries.
public enum DriftEvent: Sendable, Equatable {
    /// A tenant (village code) drifted, or drifted differently than last said: what
    /// `desactl apply` would do for it.
    case tenantDrifted(code: String, lines: [String])
    /// A tenant reported as drifted matches the state database again.
    case tenantInLine(code: String)
    /// Server-wide drift (shared directories, a dead master, unknown configs) is new or changed.
    case serverDrifted(lines: [String])
    /// The round's counts: said on the first round and whenever they change shape.
    case summary(DriftWatch.Round)
}

/// "Report each change once": from one round to the next, what is new to say. Pure: no
/// I/O, no clock, so an unchanged drift is said once and not every round, and a repaired
/// tenant is said to be back in line exactly once.
public struct DriftState: Sendable, Equatable {
    private var previous: [String: [String]] = [:]
    private var previousServer: [String] = []
    private var first = true

    public init() {}

    /// The events of `round`, given every round before it; tenants in code order.
    public mutating func next(_ round: DriftWatch.Round) -> [DriftEvent] {
        var events: [DriftEvent] = []
        for (code, lines) in round.drifted.sorted(by: { $0.key < $1.key }) where previous[code] != lines {
            events.append(.tenantDrifted(code: code, lines: lines))
        }
        for code in previous.keys.sorted() where round.drifted[code] == nil {
            events.append(.tenantInLine(code: code))
        }
        if round.server != previousServer, !round.server.isEmpty {
            events.append(.serverDrifted(lines: round.server))
        }
        if first || round.drifted.count != previous.count || round.server.isEmpty != previousServer.isEmpty {
            events.append(.summary(round))
        }
        previous = round.drifted
        previousServer = round.server
        first = false
        return events
    }
}
