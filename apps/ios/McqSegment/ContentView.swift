import PhotosUI
import SwiftUI

/// Pick a photo, segment it with the bundled mcq model, show the overlay, the classes present and the time.
struct ContentView: View {
    @State private var segmenter: Segmenter?
    @State private var message = "Choose a photo."
    @State private var picked: PhotosPickerItem?
    @State private var image: UIImage?
    @State private var result: Segmentation?
    @State private var showOverlay = true

    var body: some View {
        NavigationStack {
            ScrollView {
                VStack(alignment: .leading, spacing: 12) {
                    if let segmenter { Text(segmenter.description).font(.footnote).foregroundStyle(.secondary) }
                    PhotosPicker("Choose a photo", selection: $picked, matching: .images)
                        .buttonStyle(.borderedProminent)
                        .disabled(segmenter == nil)
                    Text(message)
                    if let image {
                        ZStack {
                            Image(uiImage: image).resizable()
                            if showOverlay, let result {
                                Image(uiImage: result.overlay).resizable().interpolation(.none)
                            }
                        }
                        .aspectRatio(image.size, contentMode: .fit)
                        Toggle("Overlay", isOn: $showOverlay)
                    }
                    if let result {
                        ForEach(result.classes) { item in
                            HStack {
                                Rectangle().fill(colour(item.index)).frame(width: 16, height: 16)
                                Text("\(item.name) (\(String(format: "%.1f", 100 * item.share))%)")
                            }
                        }
                    }
                }
                .padding()
            }
            .navigationTitle("mcq segment")
        }
        .task { load() }
        .onChange(of: picked) { _, item in
            Task { await segment(item) }
        }
    }

    @MainActor
    private func load() {
        do {
            segmenter = try Segmenter()
        } catch {
            message = "Error: \(error.localizedDescription)"
        }
    }

    @MainActor
    private func segment(_ item: PhotosPickerItem?) async {
        guard let item, let segmenter else { return }
        do {
            guard let data = try await item.loadTransferable(type: Data.self), let photo = UIImage(data: data) else {
                throw SegmenterError.badImage("cannot read the photo")
            }
            image = photo
            message = "Segmenting ..."
            let answer = try segmenter.segment(photo)
            result = answer
            message = String(format: "%.1f ms per image", answer.milliseconds)
        } catch {
            result = nil
            message = "Error: \(error.localizedDescription)"
        }
    }

    private func colour(_ index: Int) -> Color {
        let rgb = segmenter?.meta.palette[index] ?? [0, 0, 0]
        return Color(red: Double(rgb[0]) / 255, green: Double(rgb[1]) / 255, blue: Double(rgb[2]) / 255)
    }
}
