import ServiceLifecycle

/// A service that does one thing now and then again every `interval` on `clock` (counted
/// from the end of one tick to the start of the next, so a slow tick never overlaps the
/// next), until graceful shutdown or cancellation; either one also cancels a tick in
/// progress. `tick` is given how many ticks came before it. A tick that throws anything
/// but `CancellationError` ends the service, and with it the agent: ticks report and
/// survive their own failures.
struct Periodic<C: Clock>: Service, CustomStringConvertible where C.Duration == Duration {
    let name: String
    let interval: Duration
    let clock: C
    let tick: @Sendable (_ count: Int) async throws -> Void

    init(_ name: String, every interval: Duration, clock: C, _ tick: @escaping @Sendable (_ count: Int) async throws -> Void) {
        self.name = name
        self.interval = interval
        self.clock = clock
        self.tick = tick
    }

    var description: String { name }

    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown { [self] in
                var count = 0
                while true {
                    try await tick(count)
                    count += 1
                    try await clock.sleep(for: interval)
                }
            }
        } catch is CancellationError {}
    }
}
