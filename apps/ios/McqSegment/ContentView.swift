import CoreImage
import PhotosUI
import SwiftUI

/// The app's state: the model on the chosen compute units, the shown image and its prediction, the camera.
@MainActor
final class AppState: ObservableObject {
    @Published var segmenter: Segmenter?
    @Published var compute: ComputeChoice = .all
    @Published var message = "Choose a photo or start the camera."
    @Published var image: UIImage?
    @Published var prediction: Prediction?
    @Published var cameraOn = false
    private let camera = Camera()
    private let frames = CIContext()

    /// (Re)load the model on `compute`.
    func load() {
        do {
            segmenter = try Segmenter(computeUnits: compute.units)
        } catch {
            segmenter = nil
            message = "Error: \(error.localizedDescription)"
        }
    }

    func predict(_ item: PhotosPickerItem?) async {
        guard let item, let segmenter else { return }
        do {
            guard let data = try await item.loadTransferable(type: Data.self), let photo = UIImage(data: data) else {
                throw SegmenterError.badImage("cannot read the photo")
            }
            image = photo
            message = "Running the model ..."
            show(try segmenter.predict(photo), unit: "image")
        } catch {
            prediction = nil
            message = "Error: \(error.localizedDescription)"
        }
    }

    func toggleCamera() async {
        if cameraOn {
            camera.stop()
            cameraOn = false
            return
        }
        guard let segmenter else { return }
        let frames = frames
        camera.onFrame = { [weak self] frame in  // on the camera's queue
            let result = Result { try segmenter.predict(frame) }
            let image = CIImage(cvPixelBuffer: frame)
            let picture = frames.createCGImage(image, from: image.extent)
            Task { @MainActor in
                guard let self, self.cameraOn else { return }
                if let picture { self.image = UIImage(cgImage: picture) }
                switch result {
                case .success(let prediction): self.show(prediction, unit: "frame")
                case .failure(let error): self.message = "Error: \(error.localizedDescription)"
                }
            }
        }
        cameraOn = await camera.start()
        if !cameraOn { message = "No camera: allow access in Settings > Privacy > Camera." }
    }

    private func show(_ result: Prediction, unit: String) {
        prediction = result
        message = String(format: "%.1f ms per %@ (%@)", result.milliseconds, unit, compute.rawValue)
    }
}

/// Pick a photo or run the camera, show the overlay (classes, or the depth colour map with its range in metres),
/// the time of the model per image or frame, and the compute units it runs on.
struct ContentView: View {
    @StateObject private var state = AppState()
    @State private var picked: PhotosPickerItem?
    @State private var showOverlay = true

    var body: some View {
        NavigationStack {
            ScrollView {
                VStack(alignment: .leading, spacing: 12) {
                    if let segmenter = state.segmenter {
                        Text(segmenter.description).font(.footnote).foregroundStyle(.secondary)
                    }
                    Picker("Compute units", selection: $state.compute) {
                        ForEach(ComputeChoice.allCases) { Text($0.rawValue).tag($0) }
                    }
                    .pickerStyle(.segmented)
                    .disabled(state.cameraOn)
                    HStack {
                        PhotosPicker("Choose a photo", selection: $picked, matching: .images)
                            .disabled(state.segmenter == nil || state.cameraOn)
                        Button(state.cameraOn ? "Stop camera" : "Camera") { Task { await state.toggleCamera() } }
                            .disabled(state.segmenter == nil)
                    }
                    .buttonStyle(.borderedProminent)
                    Text(state.message)
                    if let image = state.image {
                        ZStack {
                            Image(uiImage: image).resizable()
                            if showOverlay, let overlay = state.prediction?.overlay {
                                Image(uiImage: overlay).resizable().interpolation(.none)
                            }
                        }
                        .aspectRatio(image.size, contentMode: .fit)
                        Toggle("Overlay", isOn: $showOverlay)
                    }
                    if let prediction = state.prediction { Legend(prediction: prediction, meta: state.segmenter?.meta) }
                }
                .padding()
            }
            .navigationTitle("mcq")
        }
        .task { state.load() }
        .onChange(of: state.compute) { _, _ in state.load() }
        .onChange(of: picked) { _, item in Task { await state.predict(item) } }
    }
}

/// Seg: the classes present with their colour and share; depth: the colour ramp with its min and max.
struct Legend: View {
    let prediction: Prediction
    let meta: McqMetadata?

    var body: some View {
        if let range = prediction.depthRange {
            let unit = meta?.output.units == "metres" ? "m" : (meta?.output.units ?? "")
            VStack(alignment: .leading, spacing: 2) {
                LinearGradient(colors: Processing.depthRamp.map(colour), startPoint: .leading, endPoint: .trailing)
                    .frame(height: 12)
                HStack {
                    Text(String(format: "%.2f %@", range.lowerBound, unit))
                    Spacer()
                    Text("near ← → far").foregroundStyle(.secondary)
                    Spacer()
                    Text(String(format: "%.2f %@", range.upperBound, unit))
                }
                .font(.footnote)
            }
        } else {
            ForEach(prediction.classes) { item in
                HStack {
                    Rectangle().fill(colour(meta?.palette?[item.index].map(Float.init) ?? [0, 0, 0]))
                        .frame(width: 16, height: 16)
                    Text("\(item.name) (\(String(format: "%.1f", 100 * item.share))%)")
                }
            }
        }
    }

    private func colour(_ rgb: [Float]) -> Color {
        Color(red: Double(rgb[0]) / 255, green: Double(rgb[1]) / 255, blue: Double(rgb[2]) / 255)
    }
}
