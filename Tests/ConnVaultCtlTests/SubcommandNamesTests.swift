import ConnVaultCtlSupport
import Testing

@testable import connvaultctl

/// The subcommand list the fuzz harness hoists around (it cannot link the executable) is connvaultctl's own.
@Suite struct SubcommandNamesTests {
    @Test func theSupportListIsTheCommandConfiguration() {
        #expect(ArgumentPreprocessor.subcommandNames == ConnVaultCtl.subcommandNames)
    }
}
