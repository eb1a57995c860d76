// PURE. The labelling table for captures labelled from nDPI's own verdicts (tests/result/*.out of
// nDPI 4.2): which of the six activity classes an nDPI protocol name stands for, by WHAT THE
// APPLICATION IS, never by how its traffic looks. Written before the engine saw any of these captures
// (see README.md, "The nDPI 4.2 set").
//
// Rules the table follows:
//   - remote-desktop: desktop-sharing applications (RDP, VNC, AnyDesk, TeamViewer, Citrix ICA).
//   - conferencing: calls and meetings — the call protocols (SIP, H.323, RTP, RTCP, Skinny), the
//     meeting applications (Zoom, Webex, Teams, Skype/Teams), and a messenger's CALL where nDPI names it
//     apart from its chat (SkypeCall, WhatsAppCall, SignalVoip, FacebookVoip, SnapchatCall,
//     KakaoTalk_Voice, GoogleHangoutDuo); voice chat for players (TeamSpeak).
//   - gaming: named games and game platforms (Starcraft, WorldOfWarcraft, Nintendo, GenshinImpact,
//     AmongUs, Steam, Xbox, Playstation, …).
//   - video-streaming: video services and video transports (NetFlix, YouTube, Zattoo, PPStream,
//     MPEG_TS, RTSP, RTMP, Twitch, 1kxun, …).
//   - bulk-transfer: file transfer and file sharing (FTP_DATA, BitTorrent, Dropbox, WhatsAppFiles,
//     YouTubeUpload, RSYNC, NFS, SMB, AFP, iSCSI, TFTP, Git, Ookla's speed test).
//   - background: everything else — web, mail, name lookups, chat, social networks, music, system and
//     industrial protocols, VPNs and tunnels, crypto-currency nodes. A name not in the table is
//     background.
//
// nDPI names a flow `Master.App` (e.g. `TLS.Zoom`, `STUN.WhatsAppCall`, `DNS.NetFlix`) or just `App`.
// A flow's class is the class of App when App is in the table, else of Master, else background; except
// that a NAME LOOKUP for an application (Master is DNS, MDNS, LLMNR, DoH_DoT, DNScrypt) is background:
// it is the look-up, not the application's traffic. `Unknown` is no class at all (see ndpi-labels.ts).

import type { ActivityClass } from './signatures.js';

export const NDPI_CLASSES: Readonly<Record<string, ActivityClass>> = {
  // remote-desktop
  RDP: 'remote-desktop', VNC: 'remote-desktop', AnyDesk: 'remote-desktop', TeamViewer: 'remote-desktop',
  Citrix: 'remote-desktop',
  // conferencing
  Zoom: 'conferencing', Webex: 'conferencing', Teams: 'conferencing', Skype_Teams: 'conferencing',
  Skype: 'conferencing', SkypeCall: 'conferencing', WhatsAppCall: 'conferencing', SignalVoip: 'conferencing',
  FacebookVoip: 'conferencing', SnapchatCall: 'conferencing', KakaoTalk_Voice: 'conferencing',
  GoogleHangoutDuo: 'conferencing', GoogleHangout: 'conferencing', SIP: 'conferencing', H323: 'conferencing',
  RTP: 'conferencing', RTCP: 'conferencing', SRTP: 'conferencing', CiscoSkinny: 'conferencing',
  TeamSpeak: 'conferencing', IAX: 'conferencing', MGCP: 'conferencing', Discord: 'conferencing',
  // gaming
  Starcraft: 'gaming', WorldOfWarcraft: 'gaming', Nintendo: 'gaming', GenshinImpact: 'gaming',
  AmongUs: 'gaming', Steam: 'gaming', Xbox: 'gaming', Playstation: 'gaming', Roblox: 'gaming',
  Dota2: 'gaming', LeagueOfLegends: 'gaming', Fortnite: 'gaming', Quake: 'gaming', HalfLife2: 'gaming',
  Warcraft3: 'gaming', CallOfDuty: 'gaming', RakNet: 'gaming', Activision: 'gaming', EAGames: 'gaming',
  PUBG: 'gaming', Minecraft: 'gaming',
  // video-streaming
  NetFlix: 'video-streaming', YouTube: 'video-streaming', Zattoo: 'video-streaming', PPStream: 'video-streaming',
  MPEG_TS: 'video-streaming', RTSP: 'video-streaming', RTMP: 'video-streaming', Twitch: 'video-streaming',
  '1kxun': 'video-streaming', IQIYI: 'video-streaming', Hulu: 'video-streaming', AmazonVideo: 'video-streaming',
  Dazn: 'video-streaming', DisneyPlus: 'video-streaming', HBO: 'video-streaming', TikTok: 'video-streaming',
  Vevo: 'video-streaming', Pandora: 'background', MpegDash: 'video-streaming', Mpeg: 'video-streaming',
  QuickPlay: 'video-streaming', Tvuplayer: 'video-streaming', Showtime: 'video-streaming', LiveStream: 'video-streaming',
  // bulk-transfer
  FTP_DATA: 'bulk-transfer', BitTorrent: 'bulk-transfer', Dropbox: 'bulk-transfer', WhatsAppFiles: 'bulk-transfer',
  YouTubeUpload: 'bulk-transfer', RSYNC: 'bulk-transfer', NFS: 'bulk-transfer', SMBv1: 'bulk-transfer',
  SMBv23: 'bulk-transfer', AFP: 'bulk-transfer', iSCSI: 'bulk-transfer', TFTP: 'bulk-transfer', Git: 'bulk-transfer',
  Ookla: 'bulk-transfer', eDonkey: 'bulk-transfer', Gnutella: 'bulk-transfer', AppleiCloud: 'background',
  WindowsUpdate: 'bulk-transfer', UbuntuONE: 'bulk-transfer', GoogleDrive: 'bulk-transfer', MS_OneDrive: 'bulk-transfer',
};

/** Masters whose flows are a name lookup for the App, not the App's traffic. */
export const NDPI_LOOKUP_MASTERS: ReadonlySet<string> = new Set(['DNS', 'MDNS', 'LLMNR', 'DoH_DoT', 'DNScrypt']);

/** The class of one nDPI protocol name (`App` or `Master.App`); `undefined` for `Unknown`. */
export function ndpiClassOf(name: string): ActivityClass | undefined {
  if (name === 'Unknown') return undefined;
  const dot = name.indexOf('.');
  const master = dot < 0 ? name : name.slice(0, dot);
  const app = dot < 0 ? name : name.slice(dot + 1);
  if (dot >= 0 && NDPI_LOOKUP_MASTERS.has(master)) return 'background';
  const own = (n: string): ActivityClass | undefined => (Object.hasOwn(NDPI_CLASSES, n) ? NDPI_CLASSES[n] : undefined);
  return own(app) ?? own(master) ?? 'background';
}
