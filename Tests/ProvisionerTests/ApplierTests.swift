import Foundation
import Testing
@testable import Provisioner

/// A clock that only moves when someone sleeps on it.
final class ManualTime: @unchecked Sendable {
    private let lock = NSLock()
    private var current = Date(timeIntervalSince1970: 1_800_000_000)
    var now: Date { lock.withLock { current } }
    func advance(_ s: TimeInterval) { lock.withLock { current += s } }
    var source: TimeSource { TimeSource(now: { self.now }, sleep: { self.advance($0) }) }
}

/// An error that is not a DesaError.
struct Broken: Error, CustomStringConvertible { var description: String { "the disk said no" } }

/// An operation that records that it ran, or throws.
struct Record: CustomEffect {
    var name: String
    var throwing = false
    var subject: String { name }
    static let ran = Locked<[String]>([])
    func run(_ context: ApplyContext) throws {
        if throwing { throw Broken() }
        Self.ran.withLock { $0.append(name) }
    }
}

final class Locked<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ v: T) { value = v }
    func withLock<R>(_ body: (inout T) -> R) -> R { lock.withLock { body(&value) } }
}

@Suite("Applier without a server", .serialized)
struct ApplierTests {
    func applier(_ time: TimeSource) -> Applier {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("desa-applier-\(UUID().uuidString)").path
        return Applier(context: ApplyContext(config: RendererTests.config(dir: dir), runner: SystemProcessRunner(), time: time),
                       progress: SilentProgress())
    }

    @Test("an error of any type fails its tenant only, and the batch goes on in phase order")
    func anyErrorStopsAtItsTenant() throws {
        Record.ran.withLock { $0 = [] }
        let plan = Plan(steps: [
            Step("A", "late", .archive, .custom(Record(name: "A-archive"))),
            Step("A", "breaks", .stop, .custom(Record(name: "A-stop", throwing: true))),
            Step("B", "late", .archive, .custom(Record(name: "B-archive"))),
            Step("B", "early", .stop, .custom(Record(name: "B-stop"))),
            Step("B", "verify", .verify, .verify(Verification(expect: .active, probes: []))),
        ])
        let r = try applier(.system).apply(plan)
        #expect(Record.ran.withLock { $0 } == ["B-stop", "B-archive"])
        #expect(r.outcomes["A"] == .init(status: .failed, reason: "the disk said no"))
        #expect(r.outcomes["B"] == .init(status: .active, reason: nil))
    }

    @Test("mounts run several tenants at once, each tenant's steps in order, and a failed step ends only its tenant's later ones")
    func mountsByTenant() throws {
        Record.ran.withLock { $0 = [] }
        let tenants = (0..<40).map { "T\($0)" }
        var steps = [Step(nil, "server", .mounts, .custom(Record(name: "server")))]
        for t in tenants {
            steps.append(Step(t, "make", .mounts, .custom(Record(name: t + "-make", throwing: t == "T7"))))
            steps.append(Step(t, "mount", .mounts, .custom(Record(name: t + "-mount"))))
            steps.append(Step(t, "dirs", .directories, .custom(Record(name: t + "-dirs"))))
        }
        let r = try applier(.system).apply(Plan(steps: steps))
        let ran = Record.ran.withLock { $0 }
        #expect(ran.first == "server")
        #expect(ran.count == 1 + 39 * 3)
        for t in tenants where t != "T7" {
            let at = [t + "-make", t + "-mount", t + "-dirs"].map { ran.firstIndex(of: $0) ?? -1 }
            #expect(at[0] >= 0 && at[0] < at[1] && at[1] < at[2], "\(t): \(at)")
            #expect(r.outcomes[t] == nil)
        }
        #expect(!ran.contains { $0.hasPrefix("T7-") })
        // Every tenant's mounts before any tenant's directories: the phases still hold.
        let lastMount = ran.lastIndex { $0.hasSuffix("-mount") }!, firstDirs = ran.firstIndex { $0.hasSuffix("-dirs") }!
        #expect(lastMount < firstDirs)
        #expect(r.failures.map(\.code) == ["T7"])
    }

    @Test("an error in a server step fails the command")
    func serverStepFailsCommand() throws {
        let plan = Plan(steps: [Step(nil, "breaks", .directories, .custom(Record(name: "server", throwing: true)))])
        #expect(throws: Broken.self) { try applier(.system).apply(plan) }
    }

    @Test("verifying 10,000 pools reads the socket table once, though one read takes longer than the cache lasts")
    func socketTableReadOnce() throws {
        let time = ManualTime()
        let listening = Set((0..<10_000).map { "/run/php/p\($0).sock" })
        // Each read of /proc/net/unix costs 0.2 s of the clock, four times the cache's 0.05 s.
        let table = Processes.ListeningUnixSockets(maxAge: 0.05, time: time.source, reader: { time.advance(0.2); return listening })
        DispatchQueue.concurrentPerform(iterations: 10_000) { i in #expect(table.contains("/run/php/p\(i).sock")) }
        #expect(table.reads == 1)
        // A socket not there yet is looked up again, but not more often than the cache lasts.
        #expect(!table.contains("/run/php/new.sock"))
        #expect(!table.contains("/run/php/new.sock"))
        #expect(table.reads == 1)
        time.advance(0.06)
        #expect(!table.contains("/run/php/new.sock"))
        #expect(table.reads == 2)
    }

    @Test("verification waits on the injected clock: a tenant that never answers fails without real waiting")
    func verificationUsesTheClock() throws {
        let time = ManualTime()
        let plan = Plan(steps: [Step("A", "verify", .verify, .verify(Verification(expect: .active, probes: [
            .http(host: "a.test", address: "127.0.0.1:1", expect: .active),
        ])))])
        let started = Date()
        let r = try applier(time.source).apply(plan)
        #expect(Date().timeIntervalSince(started) < 5, "the 10 s of verification passed on the test's clock")
        let o = try #require(r.outcomes["A"])
        #expect(o.status == .failed)
        #expect(o.reason?.hasPrefix("http://a.test/ via 127.0.0.1:1 did not serve as active") == true, "\(o.reason ?? "")")
        let verify = try #require(r.phases.first { $0.0 == "verify" })
        #expect(verify.1 >= 10, "phase times are read from the same clock")
    }
}

@Suite("Process runner")
struct ProcessRunnerTests {
    @Test("a child gets stdin, stdout and stderr and nothing else of ours, even without close-on-exec")
    func noInheritedDescriptors() throws {
        let fd = open("/dev/null", O_RDONLY)  // deliberately without O_CLOEXEC
        defer { close(fd) }
        #expect(fd > 2)
        let r = try SystemProcessRunner().run(["/usr/bin/ls", "/proc/self/fd"])
        #expect(r.ok)
        // ls's own directory descriptor is the only one above 2.
        let fds = r.stdout.split(separator: "\n").compactMap { Int($0) }.filter { $0 > 2 }
        #expect(fds.count <= 1, "\(fds)")
    }
}
