import Foundation
import Testing
@testable import Provisioner

@Suite("Registered domains from Debian's Public Suffix List")
struct PublicSuffixListTests {
    let psl: PublicSuffixList

    init() throws {
        psl = try PublicSuffixList.system()
    }

    @Test("every village name under a regency domain counts against the regency's registered domain")
    func regency() {
        #expect(psl.registeredDomain(of: "x.y.bandungkab.go.id") == "bandungkab.go.id")
        #expect(psl.registeredDomain(of: "cileunyi-kulon.bandungkab.go.id") == "bandungkab.go.id")
        #expect(psl.registeredDomain(of: "bandungkab.go.id") == "bandungkab.go.id")
        #expect(psl.publicSuffix(of: "cileunyi-kulon.bandungkab.go.id") == "go.id")
    }

    @Test("each NAME.desa.id is a registered domain of its own; desa.id, go.id and id are suffixes")
    func desaID() {
        #expect(psl.registeredDomain(of: "cileunyikulon.desa.id") == "cileunyikulon.desa.id")
        #expect(psl.registeredDomain(of: "www.cileunyikulon.desa.id") == "cileunyikulon.desa.id")
        #expect(psl.registeredDomain(of: "cileunyiwetan.desa.id") != psl.registeredDomain(of: "cileunyikulon.desa.id"))
        #expect(psl.registeredDomain(of: "desa.id") == nil)
        #expect(psl.registeredDomain(of: "go.id") == nil)
        #expect(psl.registeredDomain(of: "id") == nil)
        #expect(psl.isPublicSuffix("desa.id") && psl.isPublicSuffix("go.id"))
        #expect(!psl.isPublicSuffix("bandungkab.go.id"))
        // Let's Encrypt counts a name that is itself a suffix under its own key.
        #expect(psl.rateLimitKey(for: "desa.id") == "desa.id")
        #expect(psl.rateLimitKey(for: "a.b.bandungkab.go.id") == "bandungkab.go.id")
    }

    @Test("wildcard and exception rules of the real list: *.ck and !www.ck")
    func wildcardAndException() {
        #expect(psl.registeredDomain(of: "ck") == nil)
        #expect(psl.registeredDomain(of: "test.ck") == nil)  // *.ck makes test.ck a suffix
        #expect(psl.registeredDomain(of: "b.test.ck") == "b.test.ck")
        #expect(psl.registeredDomain(of: "a.b.test.ck") == "b.test.ck")
        #expect(psl.registeredDomain(of: "www.ck") == "www.ck")  // the exception
        #expect(psl.registeredDomain(of: "www.www.ck") == "www.ck")
        #expect(psl.registeredDomain(of: "city.kobe.jp") == "city.kobe.jp")  // !city.kobe.jp beats *.kobe.jp
        #expect(psl.registeredDomain(of: "c.kobe.jp") == nil)
    }

    @Test("names are matched case-insensitively, a trailing dot ignored, and answers come back lowercase")
    func caseFolding() {
        #expect(psl.registeredDomain(of: "CileunyiKulon.DESA.ID") == "cileunyikulon.desa.id")
        #expect(psl.registeredDomain(of: "WWW.BandungKab.Go.Id.") == "bandungkab.go.id")
        #expect(psl.registeredDomain(of: "WwW.Ck") == "www.ck")
        #expect(psl.registeredDomain(of: ".bandungkab.go.id") == nil)
        #expect(psl.registeredDomain(of: "a..bandungkab.go.id") == nil)
        #expect(psl.registeredDomain(of: "") == nil)
    }

    @Test("the PRIVATE section counts by default, as for Let's Encrypt; ICANN-only stops at the registry")
    func sections() throws {
        #expect(psl.registeredDomain(of: "desa.github.io") == "desa.github.io")
        let icann = try PublicSuffixList.load(sections: .icannOnly)
        #expect(icann.registeredDomain(of: "desa.github.io") == "github.io")
        #expect(icann.registeredDomain(of: "x.bandungkab.go.id") == "bandungkab.go.id")
        #expect(icann.ruleCount < psl.ruleCount)
    }

    /// Debian ships the list's own test cases; every one of them must pass.
    @Test("the list's official test cases (Debian's examples/test_psl.txt) all pass")
    func officialCases() throws {
        let path = "/usr/share/doc/publicsuffix/examples/test_psl.txt"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var checked = 0
        for line in text.split(separator: "\n") where line.hasPrefix("checkPublicSuffix(") {
            let args = line.dropFirst("checkPublicSuffix(".count).dropLast(2)  // drop ");"
            let parts = args.split(separator: ",", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            func value(_ s: String) -> String? { s == "null" ? nil : String(s.dropFirst().dropLast()) }
            guard let input = value(parts[0]) else { continue }
            let expected = value(parts[1]).flatMap { PublicSuffixList.normalize($0) }
            #expect(psl.registeredDomain(of: input) == expected, "\(line)")
            checked += 1
        }
        #expect(checked >= 70)
    }

    @Test("internationalised rules are matched in A-label form")
    func idn() {
        // 公司.cn is listed in Unicode; the list's own test gives its punycode.
        #expect(psl.registeredDomain(of: "www.xn--85x722f.xn--55qx5d.cn") == "xn--85x722f.xn--55qx5d.cn")
        #expect(psl.registeredDomain(of: "xn--55qx5d.cn") == nil)
        #expect(Punycode.encode("bücher") == "bcher-kva")
        #expect(Punycode.encode("食狮") == "85x722f")
    }

    @Test("a missing list is a clear error naming the package to install")
    func missingFile() throws {
        let error = #expect(throws: DesaError.self) {
            try PublicSuffixList.load(path: "/nonexistent/public_suffix_list.dat")
        }
        #expect(error?.kind == .notFound)
        #expect(error?.message.contains("install Debian's publicsuffix package") == true)
        #expect(error?.message.contains("/nonexistent/public_suffix_list.dat") == true)
    }

    @Test("the real list loads fast (time printed)")
    func loadTime() throws {
        var best = Double.infinity
        var rules = 0
        for _ in 0..<5 {
            let start = Date()
            let list = try PublicSuffixList.load()
            best = min(best, Date().timeIntervalSince(start))
            rules = list.ruleCount
        }
        print("PublicSuffixList: \(rules) rules loaded in \(String(format: "%.1f", best * 1000)) ms (best of 5)")
        #expect(rules > 9000)
    }
}
