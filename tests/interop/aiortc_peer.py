"""A call participant built on aiortc, a WebRTC stack nobody here wrote.

It signals with the relay over MQTT (paho-mqtt) exactly as a phone would:
offer on session/<sid>/webrtc/<me>/up, follow the relay's answers, offers and
candidates on .../down. As `send` it sends synthetic 320x240 VP8 video; as
`receive` it decodes what the relay forwards. It prints one JSON line with
what it saw and exits after --seconds.
"""

import argparse
import asyncio
import json
import sys
import time

import numpy as np
import paho.mqtt.client as mqtt
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp
from av import VideoFrame


class Synthetic(VideoStreamTrack):
    """Frames whose top-left block carries the frame number in its luma."""

    def __init__(self):
        super().__init__()
        self.sent = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        image = np.zeros((240, 320, 3), np.uint8)
        image[:, :, 1] = 128
        image[:16, :16, :] = (self.sent * 7) % 256
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        self.sent += 1
        return frame


async def main(args):
    loop = asyncio.get_running_loop()
    inbox = asyncio.Queue()
    up = f"session/{args.sid}/webrtc/{args.client_id}/up"
    down = f"session/{args.sid}/webrtc/{args.client_id}/down"
    errors = f"clients/{args.client_id}/errors"
    subscribed = asyncio.Event()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=args.client_id)
    client.username_pw_set(args.user, args.token)
    client.on_message = lambda c, u, m: loop.call_soon_threadsafe(
        inbox.put_nowait, (m.topic, m.payload)
    )
    client.on_subscribe = lambda c, u, mid, codes, p: loop.call_soon_threadsafe(subscribed.set)

    def on_connect(c, userdata, flags, reason, properties):
        c.subscribe([(down, 1), (errors, 1)])

    client.on_connect = on_connect
    client.connect(args.host, args.port)
    client.loop_start()
    await asyncio.wait_for(subscribed.wait(), 10)

    def send(message):
        client.publish(up, json.dumps(message), qos=1)

    pc = RTCPeerConnection()
    seen = {"decoded": 0, "sizes": set(), "errors": [], "first_frame_s": None, "offers": 0, "tracks": 0}
    started = time.time()
    source = None
    if args.role == "send":
        source = Synthetic()
        pc.addTrack(source)
    else:
        receiving = pc.addTransceiver("video", direction="recvonly")
        if args.prefer:
            # The preferred codec first (as a device that prefers H264 offers).
            codecs = RTCRtpReceiver.getCapabilities("video").codecs
            first = [c for c in codecs if c.mimeType.lower() == f"video/{args.prefer}".lower()]
            receiving.setCodecPreferences(first + [c for c in codecs if c not in first])

        @pc.on("track")
        def on_track(track):
            seen["tracks"] += 1

            async def consume():
                while True:
                    try:
                        frame = await track.recv()
                    except MediaStreamError:
                        return
                    seen["decoded"] += 1
                    seen["sizes"].add(f"{frame.width}x{frame.height}")
                    if seen["first_frame_s"] is None:
                        seen["first_frame_s"] = round(time.time() - started, 2)

            asyncio.ensure_future(consume())

    # aiortc gathers every candidate into the SDP before it returns.
    await pc.setLocalDescription(await pc.createOffer())
    send({"type": "offer", "sdp": pc.localDescription.sdp})

    async def follow():
        while True:
            topic, payload = await inbox.get()
            message = json.loads(payload)
            if topic == errors:
                seen["errors"].append(message)
            elif message["type"] == "answer":
                await pc.setRemoteDescription(RTCSessionDescription(message["sdp"], "answer"))
            elif message["type"] == "offer":
                seen["offers"] += 1
                await pc.setRemoteDescription(RTCSessionDescription(message["sdp"], "offer"))
                await pc.setLocalDescription(await pc.createAnswer())
                send({"type": "answer", "sdp": pc.localDescription.sdp})
            elif message["type"] == "candidate" and message.get("candidate"):
                c = message["candidate"]
                candidate = candidate_from_sdp(c["candidate"].split(":", 1)[1])
                candidate.sdpMid = c.get("sdpMid")
                candidate.sdpMLineIndex = c.get("sdpMLineIndex")
                await pc.addIceCandidate(candidate)

    follower = asyncio.ensure_future(follow())
    deadline = started + args.seconds
    # A receiver is done once it decoded --frames; a sender runs until the
    # test stops it or the deadline passes.
    while time.time() < deadline and not (args.role == "receive" and seen["decoded"] >= args.frames):
        await asyncio.sleep(0.1)
    follower.cancel()
    print(
        json.dumps(
            {
                "role": args.role,
                "sent": source.sent if source else 0,
                "decoded": seen["decoded"],
                "sizes": sorted(seen["sizes"]),
                "first_frame_s": seen["first_frame_s"],
                "state": pc.connectionState,
                "errors": seen["errors"],
                "offers": seen["offers"],
                "tracks": seen["tracks"],
            }
        )
    )
    await pc.close()
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["send", "receive"])
    for name in ["host", "sid", "client-id", "user", "token"]:
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--prefer", help="a receiver's preferred video codec (H264, VP8)")
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
