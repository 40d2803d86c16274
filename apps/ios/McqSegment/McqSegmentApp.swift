import SwiftUI

@main
struct McqSegmentApp: App {
    var body: some Scene {
        WindowGroup { ContentView() }
    }
}
