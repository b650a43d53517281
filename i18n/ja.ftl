# ssmax-card の日本語メッセージ。キーとプレースホルダーは en.ftl と同じ(単体テストで確認)。

## token/: PKCS#11 トークンの動作

token-module-load = PKCS#11 モジュール { $path } を読み込めません: { $reason }
token-module-failed = PKCS#11 モジュール { $module }: { $what }。エージェントは動作を続け、次の要求ではモジュールを新たに起動します。やり直してください
module-fault-signal = ワーカープロセスが { $function } の実行中に { $signal } で強制終了しました
module-fault-exit = ワーカープロセスが { $function } の実行中に終了しました (ステータス { $status })
module-fault-hung = { $function } が { $ms } ミリ秒以内に応答しなかったため、ワーカープロセスを停止しました
module-fault-garbled = ワーカープロセスが { $function } に不正な応答 ({ $what }) を返したため、停止しました
module-fault-start = ワーカープロセスを起動できません: { $reason }
token-removed = { $function } が失敗しました: { $code } — カードまたはトークンが取り外されました。挿入してからやり直してください
token-session-closed = { $function } が失敗しました: { $code } — セッションが閉じられました(カードの取り外しまたはリセット)。やり直してください
token-logged-out = { $function } が失敗しました: { $code } — トークンのログイン状態が失われました(他のプログラムによるログアウトまたはカードのリセット)。やり直してください
token-mechanism-unsupported = { $function } が失敗しました: { $code } — トークンはこのアルゴリズムに対応していません
token-call-failed = { $function } が失敗しました: { $code }
token-bad-answer = { $function } が不正な値を返しました: { $what }
token-wrong-pin = トークン「{ $token }」の PIN が違います({ $tries })。再試行はしていません
token-pin-locked = トークン「{ $token }」の PIN はロックされています。PUK またはカードの発行元でロックを解除してください(マイナンバーカードの PIN は市区町村の窓口で再設定します)
token-final-try-refused = トークン「{ $token }」の PIN の残り試行回数は 1 回です。使い切らないよう中止しました。PIN に確信がある場合は --allow-final-pin-try を付けて再実行してください
token-pin-rules = PIN がトークン「{ $token }」の条件に合いません({ $reason })。試行回数は消費していません
token-no-pin-source = PIN を尋ねる手段がありません: { $reason }
token-module-missing = ファイルがありません(モジュールのパッケージはインストールされていますか?)
token-unusable-card = モジュールが扱えないカード({ $error })
token-ambiguous = 複数のトークンがあります({ $tokens })。--token 'pkcs11:token=ラベル' で一つを選んでください
token-named-absent = トークン { $uri } が見つかりません。カードまたはトークンを挿入してやり直してください。
token-none-present = トークンが見つかりません。カードまたはトークンを挿入してやり直してください。
token-searched = 探した場所: { $slots }。
token-no-module = PKCS#11 モジュールが見つかりません。トークンのモジュール(softhsm2、opensc、ykcs11)をインストールするか、--token 'pkcs11:?module-path=/path/to/module.so' で指定してください
token-slot = { $module } スロット { $slot }「{ $description }」: { $state }
token-no-profile = トークン「{ $token }」({ $manufacturer } / { $model })に合うプロファイルがありません。プロファイルのディレクトリに追加してください
token-removed-during = 操作中にトークン「{ $token }」が取り外されました。挿入してやり直してください
token-removed-from = トークン「{ $token }」が「{ $slot }」から取り外されました。挿入してやり直してください
warning = 警告: { $text }
slot-empty = 空
slot-uninitialised = 初期化されていないトークン
slot-token = トークン「{ $token }」({ $manufacturer } / { $model })

## PIN

pin-state-locked = ロック中
pin-state-final-try = 残り 1 回
pin-state-low = 残り回数が少なくなっています
pin-state-earlier-wrong = 以前に誤った PIN が入力されています
pin-state-ok = 正常
pin-length-rejected = トークンが長さを受け付けませんでした
pin-context-missing = この鍵は使うたびに PIN が必要ですが、PIN が渡されていません
pin-not-asked = PIN がキャッシュされておらず、この要求では PIN を尋ねられません
pin-final-try-warning = トークン「{ $token }」の PIN の残り試行回数は 1 回です。ここで間違えるとロックされます
pin-low-warning = トークン「{ $token }」には以前に誤った PIN が入力されています。残り回数が少ないかもしれません
pin-tries-locked = PIN はロックされました
pin-tries-final = ロックまで残り 1 回
pin-tries-few = 残りわずか
pin-tries-more = 残り 2 回以上
pin-tries-uncounted = このトークンは試行回数を数えません
pin-tries-unknown = トークンは残り回数を示しません
pin-rule-length = { $min }~{ $max } 文字である必要がありますが、{ $length } 文字です
pin-rule-digits = 数字のみで入力してください
pin-rule-upper-alnum = 英大文字 A–Z と数字のみで入力してください
pin-rule-mix = 英字と数字を両方含める必要があります

## PIN の入力元

pin-fd-used = --pin-fd の PIN はすでに一度使われています
pin-tty-prompt = 「{ $token }」の PIN({ $operation }):
pin-no-terminal = PIN を尋ねる端末がありません({ $error })。pinentry を設定するか --pin-fd N を指定してください
pin-no-pinentry = pinentry が設定されていますが、pinentry プログラムが見つかりません
pin-entry-description = トークン「{ $token }」の PIN を入力してください。用途: { $operation }({ $min }~{ $max } 文字)
pin-entry-required = PIN を入力してください

## 署名

sign-no-from = メールに From アドレスがありません。署名は From アドレスに結び付ける必要があります
sign-from-refused = 署名しません: { $why }
sign-wanted-certificate = { $from } の署名用証明書
sign-wanted-personal = 個人の証明書(マイナンバーカード)
sign-from-not-address = --from「{ $from }」はメールアドレスではありません
sign-not-mime-entity = 入力が MIME エンティティではありません(Content-Type フィールドがありません)。署名する部分をヘッダーごと渡してください
sign-not-7bit = エンティティが 7 ビットでないか 998 文字を超える行があるため、中継で書き換えられて署名が壊れます。メールクライアントでエンコード(quoted-printable または base64)してください
sign-done = { $from } のメールに「{ $subject }」として署名しました(トークン「{ $token }」の鍵「{ $key }」、{ $scheme })
sign-operation = { $from } のメールに署名{ $to }
sign-operation-key = { $from } のメールに鍵「{ $key }」で署名{ $to }
sign-operation-to = (宛先 { $to })
sign-personal-unasked = 確認なしにトークン「{ $token }」では署名しません: { $what }。受信者全員にその内容が見え、しかも { $from } と結び付けられません。`ssmax-card send` で組織経由で送る(組織が署名し直します)か、--personal-certificate で確認してください
sign-personal-confirmed = ご指示により個人の証明書で署名しました: { $what }。受信者にはその内容が見え、厳格なメールクライアントは { $from } を含まない証明書の署名を拒否します
sign-no-matching-certificate = トークン「{ $token }」に { $uri } に合う署名用証明書がありません
sign-no-certificate = トークン「{ $token }」に署名に使える利用者証明書がありません(鍵と並べてインポートしてください)
sign-from-not-in-certificate = 署名を拒否しました: From アドレス { $from } はトークン「{ $token }」のどの証明書にも含まれていません(証明書にあるのは: { $names })
sign-from-not-in-certificate-none = 署名を拒否しました: From アドレス { $from } はトークン「{ $token }」のどの証明書にも含まれていません(証明書にメールアドレスがありません)
sign-certificate-expired = 「{ $label }」は { $when } に期限切れになりました(更新してください)
sign-certificate-not-yet-valid = 「{ $label }」は { $when } まで有効になりません
sign-certificate-wrong-usage = 「{ $label }」ではメールに署名できません: { $reason }
sign-no-usable = { $from } に使える証明書がありません: { $reasons }
sign-your-certificate = あなたの証明書
sign-revoked = 署名を拒否しました: { $reason } — 組織に新しい証明書を依頼してください
sign-revocation-unknown = 署名を拒否しました: { $reason }
sign-certificate-expiring = 証明書「{ $label }」は { $when } に期限切れになります(あと { $days } 日)。更新してください
sign-key-retired = 「{ $label }」の鍵は更新済みで、古いメールの復号にのみ使えます。署名するには新しい証明書をインポートしてください
sign-no-private-key = トークン「{ $token }」には証明書がありますが、その秘密鍵がありません
token-several-hold = 複数のトークンに{ $what }があります({ $tokens })。--token 'pkcs11:token=ラベル' または設定の `token` で一つを選んでください
token-none-holds = 接続されているトークン({ $tokens })のどれにも{ $what }がありません
cert-usage-no-signature = 鍵用途(key usage)がデジタル署名を許可していません
cert-usage-no-email = 拡張鍵用途(extended key usage)に電子メール保護が含まれていません

## 検証

verify-content-twice = 署名が署名対象とは別に独自の内容を持っています。拒否しました
verify-no-signers = 署名に署名者がいません
verify-no-signer-certificate = 署名者の証明書がメッセージにも指定にもありません(--certfile FILE で渡してください)
verify-no-message-digest = 署名属性にメッセージダイジェストがありません
verify-content-altered = 内容が { $who } の署名と一致しません。署名後にメールが改変されています
verify-no-content-type = 署名属性にコンテントタイプがありません
verify-content-type-differs = 署名されたコンテントタイプ属性が内容と一致しません
verify-certificate-unacceptable = { $who } の証明書は受け入れられません: { $error }
verify-signature-altered = { $who } の署名を検証できません({ $why })。メールが改変されたか、別の鍵で署名されています
verify-certificate-usage = { $who } の証明書はメールの署名に使えません: { $reason }
verify-when-now = 現在
verify-when-signed = 署名時
verify-signing-time-future = 署名時刻 { $when } が未来です
verify-certificate-not-valid = { $who } の証明書は{ $when }の時点で有効ではありません(有効期間 { $from } ~ { $until })
verify-no-anchors = トラストアンカーがありません。SSMAX ルート証明書をトークンに保存するか --ca FILE を指定してください
verify-sha1-refused = { $who } の署名は SHA-1 を使っています。破られた方式として拒否します(Thunderbird と同じ)。送信者に SHA-256 で署名するよう依頼してください
verify-weak-digest = { $who } の署名は { $digest } を使っています。弱すぎるため拒否します。送信者に SHA-256 で署名するよう依頼してください
verify-unknown-algorithm = { $who } の署名はアルゴリズム { $oid } を使っています。ssmax-card はこれを検証しません
chain-not-valid-then = { $who } の証明書チェーンに{ $when }の時点で有効でない証明書があります(署名者の有効期間 { $from } ~ { $until })
chain-untrusted = { $who } の証明書は信頼できません。チェーンがトラストアンカーに届きません(発行者: { $issuer })
chain-not-for-email = { $who } の証明書は電子メール保護用ではありません(拡張鍵用途)
chain-bad-signature = { $who } の証明書チェーンに署名が不正な証明書があります
chain-invalid = { $who } の証明書チェーンは{ $when }の時点で有効ではありません: { $error }

## 失効確認

revocation-signer-is-anchor = 署名者の証明書自体がトラストアンカーです
revocation-required-pinned = 失効状態が必要です (--revocation require) が、{ $who } は自分自身の証明書がトラストアンカーで、問い合わせる発行者がありません
revocation-in-grace = チェーンの CRL は nextUpdate を過ぎていますが、猶予期間 { $hours } 時間(revocation_grace_hours)の範囲内です
revocation-nothing-to-be-had = CRL も OCSP 応答も得られません(--crl、設定の crls、または証明書自身の配布点)
revocation-not-covered = チェーンのすべての証明書を確認できる CRL または OCSP 応答がありません
revocation-out-of-date = チェーンの CRL が古くなっています
revoked-named = { $revoked }。{ $who } の署名は信頼できません
revoked-in-chain = { $who } の証明書チェーンに失効した証明書があります
revocation-required-unknown = { $who } の証明書チェーンの失効状態が不明です(--revocation require)。すべての証明書に対する CRL または OCSP 応答がありません
revocation-required-stale = { $who } の証明書チェーンの CRL が古くなっています(--revocation require)。最新のものを取得してください
revocation-check-failed = { $who } の失効確認に失敗しました: { $error }
revoked-by-ocsp = 証明書「{ $subject }」(シリアル { $serial })は { $when } に失効しています({ $reason })。{ $responder } が署名した OCSP 応答による

## エラーの見出し

cms-malformed = CMS の形式が不正です: { $detail }
cms-unsupported = 対応していません: { $detail }
cms-cannot-decrypt = 復号できません: { $detail }
cms-verify-failed = 検証に失敗しました: { $detail }
cms-decrypt-failed = 復号に失敗しました: { $detail }
cms-no-key = 使える鍵がありません: { $detail }
mail-malformed = メールの形式が不正です: { $detail }
file-cannot-read = { $path } を読めません: { $error }
file-not-regular = { $path } は通常のファイルではなく{ $kind }です。拒否しました
file-too-large = { $path } は { $limit } を超えています。拒否しました
bad-profile = プロファイルが不正です: { $error }
bad-config = 設定が不正です: { $error }
file-kind-directory = ディレクトリ
file-kind-fifo = FIFO(名前付きパイプ)
file-kind-char-device = キャラクターデバイス
file-kind-block-device = ブロックデバイス
file-kind-socket = ソケット
file-kind-other = ファイル以外のもの
revocation-status-good = 失効していません(チェーンのすべての証明書を最新の CRL または OCSP 応答で確認済み)
revocation-status-unknown = 失効状態は不明です: { $why }
revocation-status-off = 確認していません(--revocation off)

## 検証結果

verify-is-encrypted = このメールは署名ではなく暗号化されています。'ssmax-card decrypt' を使ってください
verify-no-from = メールに証明書と照合する From アドレスがありません
verify-too-deep = 署名が { $layers } 階層を超えて入れ子になっています。拒否しました
verify-inner-failed = 内側の署名(第 { $layer } 層): { $error }
verify-from-mismatch = From アドレス { $from } が署名者の証明書にありません({ $subject } の証明書にあるのは: { $names })
verify-from-mismatch-none = From アドレス { $from } が署名者の証明書にありません({ $subject } の証明書にはメールアドレスがありません)
report-good = 正しい署名: { $subject } <{ $emails }>
report-inner = 内側の署名(第 { $layer } 層): { $subject } <{ $emails }>
report-issuer = { "  " }発行者:       { $issuer }
report-algorithm = { "  " }アルゴリズム: { $algorithm }
report-signed-at = { "  " }署名日時:     { $when }
report-valid-until = { "  " }有効期限:     { $when }
report-pinned = { "  " }信頼:         署名者の証明書自体がトラストアンカーです
report-chain = { "  " }チェーン:     { $chain }
report-revocation = { "  " }失効確認:     { $status }
report-from-matches = { "  " }From 一致:    { $from }

## status

status-no-module = PKCS#11 モジュールがインストールされていません(探したもの: softhsm2、opensc、ykcs11)。インストールするか --token 'pkcs11:?module-path=...' を指定してください
status-module = モジュール { $path }
status-module-error = { "  " }エラー: { $error }
status-no-slots = { "  " }スロットがありません(リーダーが接続されていないか、pcscd が動いていません)
status-slot-problem = { "  " }スロット { $slot }「{ $description }」: { $problem }
status-slot-empty = { "  " }スロット { $slot }「{ $description }」: トークンなし
status-slot-uninitialised = { "  " }スロット { $slot }「{ $description }」: 初期化されていないトークン
status-slot-token = { "  " }スロット { $slot }「{ $description }」: トークン「{ $token }」
status-token-model = { "    " }製造元 { $manufacturer } / モデル { $model } / シリアル { $serial }
status-profile-aside = { "    " }プロファイル { $profile } はこのスロットを除外します(メール用ではありません)
status-profile = { "    " }プロファイル { $profile }
status-profile-none = { "    " }プロファイル なし(このトークンを使うには追加してください)
status-pin = { "    " }PIN          { $state }
status-token-error = { "    " }エラー: { $error }
status-certificate-unparsable = { "    " }証明書 id { $id }「{ $label }」: 解析できません
status-anchor = { "    " }トラストアンカー id { $id }「{ $label }」
status-ca-certificate = { "    " }CA 証明書 id { $id }「{ $label }」
status-certificate = { "    " }証明書 id { $id }「{ $label }」
status-expired = 期限切れ { $when }
status-expiring = { $when } に期限切れ — 警告: 30 日以内です。更新してください
status-valid-until = { $when } まで有効
status-subject = { "      " }主体者   { $subject }
status-emails = { "      " }メール   { $emails }
status-key = { "      " }鍵       { $kind }; { $expiry }
status-revocation = { "      " }失効確認 { $status }
status-key-pair = { "    " }鍵ペア id { $id }「{ $label }」: { $kind }(秘密鍵はトークン上にあります。一覧するには PIN が必要です)
status-note = { "    " }注意: { $note }
status-cannot-decrypt = { "    " }注意: このトークンは復号できません
status-revocation-no-trust = 確認していません(ここにトラストアンカーがないか、失効確認がオフです)
status-revocation-no-chain = 確認していません(チェーンがここのトラストアンカーに届きません)
status-this-certificate = この証明書
status-revoked = 失効: { $reason }

## 復号

decrypt-operation-from = { $from } からのメールを復号
decrypt-operation = メッセージを復号
decrypt-wanted-key = このメッセージの宛先の鍵
decrypt-done = トークン「{ $token }」で「{ $recipient }」の鍵により復号しました({ $transport }、{ $algorithm })
decrypt-is-signed = このメールは暗号化ではなく署名されています。'ssmax-card verify' を使ってください

## コマンドライン

cli-pin-fd-stdin = --pin-fd 0 は標準入力で、ここではメールを運んでいます。別のディスクリプタか --in FILE を使ってください
cli-cannot-read-stdin = 標準入力を読めません: { $error }
cli-input-too-large = 入力が { $limit } を超えています。拒否しました
cli-cannot-write = { $path } に書き込めません: { $error }
cli-cannot-write-stdout = 標準出力に書き込めません: { $error }
cli-labels-per-attachment = --attach ごとに --label を一つ指定してください(ファイル { $files } 個、ラベル { $labels } 個)
cli-agent-no-pin-fd = エージェントはクライアントの画面で pinentry により PIN を尋ねるため --pin-fd は使えません。--pin-fd は単発のコマンド(--agent never)に指定してください
cli-no-audit-log = 監査ログのパスがありません。--log FILE を指定してください
audit-broken = 監査ログ { $path }: { $error }
audit-intact = 監査ログ { $path }: { $entries } 件、チェーンは改ざんされていません

## エージェント

agent-unreachable = { $path } のエージェントに接続できません({ $reason })。'ssmax-card agent' で起動するか --agent never を使ってください
agent-broke-off = { $path } のエージェントが要求を中断しました({ $reason })。停止した可能性があります — コマンドをもう一度実行してください
agent-not-ours = ソケット { $path } を使いません: ユーザー { $uid } のもので、あなたのエージェントではありません(何も送っていません)
agent-module-refused = エージェントは自分の設定とプロファイルにある PKCS#11 モジュールだけを読み込みます。'{ $module }' はそのどれでもありません。エージェントの設定 (token = "pkcs11:…?module-path=…") かプロファイルに書くか、--agent never を使ってください
cli-not-for-agent = --pin-fd と --config はエージェントに渡されません。--agent never を使ってください
cli-too-many-files-for-agent = エージェントに渡せる --ca、--certfile、--crl、--content のファイルは { $most } 個までです。--agent never を使ってください
agent-refused = エージェントが要求を拒否しました
agent-no-length = エージェントが結果の長さを示しませんでした
agent-token-removed-during = 要求の処理中にトークンが取り外されました。挿入してやり直してください
agent-busy-queue = 混雑中: トークンを待つ要求が多すぎます。少し待ってからやり直してください
agent-timed-out = トークンを { $ms } ミリ秒待ちましたが時間切れになりました
agent-busy-restarting = 混雑中: トークンの呼び出しが応答しなくなったため、エージェントが再起動しています。少し待ってからやり直してください
agent-card-not-in-reader = トークン「{ $token }」が見つかりません。リーダー「{ $reader }」にカードを挿入してください
agent-reader-not-shown = トークン「{ $token }」はリーダー「{ $reader }」に結び付いていますが、PC/SC にそのリーダーが見えません(pcscd は動いていますか? リーダーは接続されていますか?)
agent-listening = { $socket } で待ち受けています
agent-listening-again = { $socket } で待ち受けています(トークン呼び出しの無応答後の再起動 { $restart } 回目)
agent-other-uid = 拒否しました: このエージェントは uid { $uid } のみに応じます
agent-busy-connections = 混雑中: エージェントは上限([agent] max_connections)の { $limit } 接続を処理中です。少し待ってからやり直してください
agent-closing-idle-for-room = 待機中の接続を閉じます: エージェントは接続数の上限([agent] max_connections)の { $limit } に達しており、この接続が最も長く何もせずに待っていました
agent-connections-capped = 同時に開いておける接続は { $limit } までです: このプロセスが開けるディスクリプタは { $descriptors } です(ulimit -n)
agent-token-hung = トークンが「{ $what }」の間 { $seconds } 秒応答しませんでした(上限 { $limit } ミリ秒、[agent] token_timeout_ms)。エージェントは呼び出しを打ち切り、トークンのモジュールを読み込み直して再起動します。カードとリーダーを確認してからやり直してください

## エージェントのイベント

event-pin-needed = トークン「{ $token }」: { $operation }
event-certificate-expired = トークン「{ $token }」の証明書「{ $label }」は { $when } に期限切れになりました。更新してください
event-certificate-expiring = トークン「{ $token }」の証明書「{ $label }」は { $when } に期限切れになります(あと { $days } 日)。更新してください
event-token-removed = トークン「{ $token }」が取り外されました。セッションを閉じ、PIN を消去しました
event-token-removed-from = トークン「{ $token }」がリーダー「{ $reader }」から取り外されました。セッションを閉じ、PIN を消去しました
event-token-replaced = トークン「{ $token }」(シリアル { $serial })が差し替えられました。セッションを閉じ、PIN を消去しました
event-token-inserted = トークン「{ $token }」(シリアル { $serial })が接続されています

## トークン上の鍵と証明書

keygen-impossible = トークン「{ $token }」ではここで鍵を生成できません: { $reason }
keygen-id-not-hex = --id { $id } は 16 進数ではありません
keygen-id-taken = トークン「{ $token }」には id { $id } の鍵がすでにあります
keygen-operation = 鍵ペア「{ $label }」を生成
keygen-done = トークン「{ $token }」に { $kind } の鍵ペア「{ $label }」を生成しました。--key 'pkcs11:id=%{ $id }' で使います(秘密鍵は取り出し不可で、トークンの外に出ることはありません)
csr-no-key = --key 'pkcs11:id=%NN' で鍵を指定してください(keygen が表示します)
csr-bad-subject = --subject「{ $subject }」: { $error }
csr-bad-email = 「{ $email }」は ASCII のメールアドレスではありません
csr-operation = { $email } の証明書要求に署名
csr-no-private-key = id { $id } の秘密鍵がありません
csr-build-failed = 要求の作成: { $error }
csr-attestation-failed = アテステーション: { $error }
csr-done = { $email } の証明書要求にトークン上で署名しました
import-only-ca = 入力には CA 証明書しかありません。import-cert にはあなたの証明書を渡してください(発行者の証明書を含めても構いません)
import-no-matching-key = インポートを拒否しました: トークン「{ $token }」に「{ $subject }」の公開鍵と合う鍵がありません
import-other-key = インポートを拒否しました: この証明書は鍵 { $wanted } ではなく鍵 { $id } のものです
import-already-there = この証明書はすでにトークンにあります
import-operation = { $subject } の証明書を保存
import-done = 「{ $subject }」を鍵 { $id } と並べて「{ $label }」として保存しました({ $until } まで有効)
import-retired = 鍵 { $id }(「{ $key }」)を署名から外しました。「{ $certificate }」宛てのメールの復号には引き続き使えます
import-root-not-stored = 保存していません: バンドル内のルート「{ $subject }」(トラストアンカーは import-anchor でのみ保存します)
import-issuer-there = 発行者「{ $subject }」はすでにトークンにあります
import-issuer-stored = 発行者「{ $subject }」を「{ $label }」として保存しました(署名に添えるためで、トラストアンカーとしては信頼しません)
import-not-certificate = 証明書ではありません: { $error }
import-empty-bundle = PKCS#7 バンドルに証明書がありません
anchor-profile-no-org-prefix = { $profile } プロファイルには、このトークンで組織証明書をどう示すかが書かれていません
anchor-profile-no-prefix = { $profile } プロファイルには、このトークンでトラストアンカーをどう示すかが書かれていません
anchor-org-is-ca = 組織証明書はエンドエンティティ証明書であり、CA ではありません
anchor-org-not-mail = 組織のメール用証明書ではありません: { $reason }
anchor-not-ca = トラストアンカーは CA 証明書である必要があります
anchor-operation-org = 組織証明書「{ $name }」を保存
anchor-operation = トラストアンカー「{ $name }」を保存
anchor-done = 「{ $subject }」をトークン「{ $token }」に「{ $label }」として保存しました
certs-expired = 期限切れ
certs-expiring = あと { $days } 日で期限切れ — 更新してください
certs-days-left = 残り { $days } 日

## SSMAX: 送信・受信・転送

send-no-from = 下書きに From アドレスがありません
send-done = 添付ファイル { $count } 件を「{ $org }」宛てに暗号化しました。{ $summary }
receive-not-ssmax = SSMAX のメールではありません。組織からの multipart/signed を想定しています
receive-no-org-certificate = メールを照合する組織証明書がトークンにありません(ラベル 'ssmax-org…')
receive-signature-count = 署名は一つ(組織のもの)のはずですが、{ $found } 個あります
receive-not-your-org = メールは「{ $subject }」が署名しています。これはトークンに保存された組織の証明書ではありません
receive-your-org = あなたの組織「{ $subject }」
receive-no-from = メールに From アドレスがありません
receive-no-originator = 組織の署名に元の送信者が記録されていません
receive-from-not-originator = From アドレス { $from } は、組織が確認した元の送信者({ $verified })ではありません
receive-wanted-key = 添付ファイルの宛先の鍵
receive-verified = 検証済み: あなたの組織「{ $subject }」の署名
receive-operation = { $from } からの保護メールを開く
receive-opened = 「{ $label }」をトークン上で「{ $recipient }」の鍵により開きました({ $transport }、{ $algorithm })
receive-forwarded-attachment = 送信者が転送した添付です(送信者が鍵を持っていたことは確認済み。最初に暗号化した人は確認できません)
view-verified = このメールは、カード上のあなたの組織の証明書({ $org })で ssmax-card が検証しました。
view-attachments = 保護された添付(カード上で復号しました):
view-failed = このメールは SSMAX の検証に失敗しました。保護された添付は一つも開いていません。差出人の表示を信用しないでください。理由: { $why }
imap-give-upstream = メールストアを指定してください: --upstream HOST:PORT または [imap] の upstream
imap-give-upstream-user = メールストアのアカウントを指定してください: --upstream-user または [imap] の upstream_user
imap-plain-loopback-only = { $upstream } はこのマシン上にありません。TLS なしではループバックアドレスのメールストアだけを読みます
imap-waiting-earlier = 先に届いた保護メールがカードと PIN を待っています
imap-waiting-notice = メールストアにある保護メールをまだ開けませんでした: { $reason }
    開くには、鍵の入ったカードを差し込み、ssmax-card が PIN を尋ねたら入力してください。数秒のうちにメールが新しいメッセージとして開かれた状態で現れ、この通知は消えます。
imap-cache-key = IMAP 入口のキャッシュ鍵
imap-cache-size = [imap] の cache_size は "1 GiB" や "500 MiB" のようなサイズで指定してください（{ $value } ではなく）
view-field-twice = { $field } フィールドが複数あります。表示される内容と実際の動作が食い違うおそれがあります
view-header-other = 注意: 署名の対象外の { $field } フィールドが別の相手を指しています: { $value }
view-untouched = SSMAX のメールではありません。そのまま表示します
view-pass = { $sender } からの SSMAX メール: 検証し、添付をカード上で復号しました
view-fail = 検証に失敗した SSMAX メール: 理由を示し、添付は開いていません({ $why })
attachment-failed = 添付ファイル「{ $label }」: { $error }
forward-no-to = --to でアドレスを一つ以上指定してください
forward-no-such-attachment = 「{ $wanted }」という名前またはラベルの添付ファイルはありません(メールにあるのは: { $have })
forward-no-such-attachment-none = 「{ $wanted }」という名前またはラベルの添付ファイルはありません(メールに添付ファイルはありません)
forward-operation = 添付ファイルを転送
forward-done = 添付ファイル { $count } 件を「{ $org }」宛てに暗号化し直して転送しました。{ $summary }
forward-no-address = トークンの証明書にメールアドレスがありません
forward-several-addresses = トークンの証明書に複数のアドレスがあります({ $addresses })。--from で一つを選んでください
identity-describe = { $factors }(トークン: { $token }、プロファイル { $profile }、PIN 確認 { $when })
chain-sending-org = 送信側の組織: { $subject }
chain-original-sender = 元の送信者:   { $subject } <{ $emails }>、署名 { $when }
chain-identity = 本人確認方法: { $method }
org-no-certificate = 組織証明書がありません。鍵と並べてトークンに保存する(ラベル 'ssmax-org…')か、設定の org_certificate を指定してください
org-no-anchor = 組織証明書を確認するための SSMAX トラストアンカーがトークンにも設定にもありません
org-whose = 組織「{ $subject }」
org-is-ca = { $subject } は CA 証明書です
org-refused = 組織証明書宛ての暗号化を拒否しました: { $reasons }

## 添付ファイルの保存

extract-wrote = { $path } に保存しました({ $label })
extract-wrote-renamed = { $path } に保存しました({ $label })。同じ名前「{ $name }」の添付ファイルがほかにもあります
extract-is-directory = { $path } はディレクトリです。何も書き込んでいません
extract-exists = { $paths } がすでにあります。何も書き込んでいません(置き換えるには --force)
extract-appeared = 保存中に同じ名前のファイルが現れました
extract-nothing-kept = { $path } に書き込めません: { $error }。何も残していません
extract-symlink = { $path } はシンボリックリンクです。何も書き込んでいません(リンク先に保存するには { $path }/. と指定してください)
extract-no-directory = { $path } がありません。何も書き込んでいません
extract-not-directory = { $path } はディレクトリではありません。何も書き込んでいません
extract-cannot-write = { $path } に書き込めません: { $error }。何も書き込んでいません

## CRL と OCSP 応答の取得

crl-none-from = { $url } から CRL を得られません: { $why }
crl-not-from-issuer = そのリストは、それを指す証明書の発行者「{ $issuer }」の署名がありません
ocsp-none-for = 「{ $subject }」の OCSP 応答を得られません: { $why }
fetch-off = キャッシュになく、取得はオフです(crl_fetch = false)
ocsp-no-responder = 応答者がありません
ocsp-time-spent = 問い合わせていません: 取得に使える時間(crl_fetch_timeout_ms)を使い切りました
crl-time-spent = 取得していません: 取得に使える時間(crl_fetch_timeout_ms)を使い切りました
crl-http-status = サーバーが HTTP { $code } を返しました
crl-transport = 取得できません({ $kind })
crl-empty-answer = 応答に CRL がありません
ocsp-http-status = 応答者が HTTP { $code } を返しました
ocsp-transport = 接続できません({ $kind })
fetch-read-failed = 読み込みに失敗しました({ $error })
fetch-too-large = { $size } を超えています。拒否しました

## トークン上の鍵

key-no-free-id = トークンに空いている CKA_ID がありません
key-no-public-key = トークン「{ $token }」に id { $id } の公開鍵がありません
key-public-unusable = id { $id } の公開鍵は使えません: { $reason }
key-cannot-encode-certificate = 証明書を符号化できません: { $error }
key-cannot-sign-kind = { $kind } の鍵ではメールに署名できません(対応: RSA、EC P-256、P-384)
key-may-not-sign = トークン「{ $token }」の鍵「{ $key }」は署名に使えません(CKA_SIGN が false: 更新済みの鍵は古いメールの復号のためだけに残しています)。現在の鍵で署名してください
key-mechanism-not-offered = トークン「{ $token }」({ $profile } プロファイル)は { $mechanism } の署名に対応していません
module-lacks = モジュールに { $function } がありません
key-no-ecdh-secret = トークンが ECDH の共有秘密を返しませんでした
key-certificate-without-key = トークンには証明書「{ $label }」がありますが、同じ id の秘密鍵がありません
key-token-cannot-decrypt = このトークンは復号できません
key-no-ecdh = トークン「{ $token }」は ECDH に対応していません
secret-pin = PIN
secret-password = パスワード
secret-fd-unreadable = { $flag } { $fd } からは{ $what }を読めません
secret-too-long = { $flag } { $fd } から { $most } バイトを超えるデータが来ました
secret-empty = { $flag } { $fd } から来た{ $what }が空です
secret-not-utf8 = { $flag } { $fd } から来た{ $what }が UTF-8 ではありません
secret-unix-only = { $flag } は Unix でのみ使えます
secret-timed-out = { $flag } { $fd } に { $minutes } 分以内に PIN の行が届きませんでした
secret-cannot-wait = { $flag } { $fd } を待てません: { $error }
secret-cannot-read = { $flag } { $fd } を読めません: { $error }

## SMTP 受付

smtp-give-relay = --relay host:port を指定してください(または設定の [smtp] relay)
smtp-give-relay-user = --relay-user を指定してください(または設定の [smtp] relay_user)
smtp-password-prompt = { $host } の { $user } のパスワード:
smtp-password-unread = パスワードを読めません: { $error }
smtp-password-empty = パスワードが空です。何も保存していません
smtp-password-stored = { $host } の { $user } のパスワードを OS のキーリングに保存しました
smtp-relay-not-host-port = リレー「{ $relay }」は host:port の形ではありません
smtp-no-relay = リレーがありません。--relay host:port または設定の [smtp] relay を指定してください
smtp-relay-ca = リレーの CA: { $error }
smtp-relay-ca-file = リレーの CA { $path }: { $error }
smtp-tls-settings = { $host } の TLS 設定: { $error }
smtp-plain-not-local = relay_tls = none はこのマシン上のリレーにのみ使えます。{ $host } には使えません
keyring-failed = OS のキーリング: { $what } ができません: { $error }
keyring-no-relay-password = OS のキーリングにリレーのアカウント { $user }@{ $host } のパスワードがありません。'ssmax-card smtp set-relay-password --relay { $host } --relay-user { $user }' を実行してください
keyring-no-upstream-password = OS のキーリングに { $host } の { $user } のパスワードがありません。ssmax-card imap set-upstream-password を実行してください
smtp-loopback-only = SMTP 受付はループバックでのみ待ち受けます。{ $listen } では待ち受けません
smtp-cannot-listen = { $listen } で待ち受けできません: { $error }
smtp-listening = { $listen } で待ち受け、{ $relay } へ中継します
agent-already-listening = { $socket } ではすでにエージェントが待ち受けています
keyring-open-relay = リレーのパスワード項目を開くこと
keyring-read-relay = リレーのパスワードを読むこと
keyring-store-relay = リレーのパスワードを保存すること
keyring-open-client = クライアントの秘密の項目を開くこと
keyring-read-client = クライアントの秘密を読むこと
keyring-store-client = クライアントの秘密を保存すること

## pkcs11: URI・設定・プロファイル

uri-invalid = pkcs11: URI が不正です: { $reason }
uri-no-scheme = 「{ $text }」が 'pkcs11:' で始まっていません
uri-path-no-equals = パス属性「{ $attribute }」に '=' がありません
uri-slot-not-number = slot-id「{ $value }」は数値ではありません
uri-unknown-type = 不明なオブジェクト種別「{ $value }」
uri-unknown-path-attribute = 不明なパス属性「{ $attribute }」
uri-query-no-equals = クエリ属性「{ $attribute }」に '=' がありません
uri-pin-refused = 「{ $attribute }」は受け付けません。PIN は pinentry、端末、または --pin-fd で渡してください
uri-unknown-query-attribute = 不明なクエリ属性「{ $attribute }」
uri-contradiction = トークンは { $attribute } に { $token }、鍵は { $key } を指定しています。互いに矛盾しています
uri-twice = 属性「{ $attribute }」が二度現れます
uri-not-utf8 = 属性「{ $attribute }」が UTF-8 ではありません
uri-bad-escape = 「{ $text }」のパーセントエスケープが不正です
config-unreadable = 設定: { $error }
profile-unreadable = プロファイル { $file } を読めません: { $error }

## 復号の詳細

decrypt-broken-cipher = 内容は { $cipher } で暗号化されています。破られた方式として拒否します。送信者に AES を使うよう依頼してください
decrypt-unknown-cipher = 内容はアルゴリズム { $oid } で暗号化されています。ssmax-card はこれを知りません
decrypt-failed-uniform = トークンの鍵でメッセージを復号できません: 改ざんされたか、この鍵宛てに暗号化されていません
decrypt-token-certificate = { $subject }(シリアル { $serial })
decrypt-none = なし
decrypt-not-for-us = メッセージはトークン上のどの鍵宛てにも暗号化されていません(受信者の種類: { $kinds }。トークンの証明書: { $ours })
verify-pss-mask-unsupported = { $who } の署名はマスク生成関数 { $oid } の RSA-PSS を使っています。ssmax-card はこれを検証しません
verify-pss-digest-mismatch = { $who } の署名は { $stated } による RSA-PSS を示していますが、ダイジェストは { $digest } です
verify-ecdsa-sha512 = { $who } の署名は SHA-512 の ECDSA を使っています。ssmax-card はまだこれを検証しません
ocsp-refused = OCSP 応答を拒否しました: { $why }
agent-start-presence = 在席監視を開始できません: { $error }
agent-start-refresher = 失効情報の更新を開始できません: { $error }
agent-start-watchdog = ウォッチドッグを開始できません: { $error }
agent-cannot-restart = その場で再起動できません({ $error })。終了します
agent-revocation-refresh = 失効情報の更新: { $note }
audit-failed = 監査ログ: { $error }
audit-repaired = 監査ログ: 停止したエージェントが残した書きかけの最終行を削除しました
agent-reply-file = 結果をクライアントのファイルに書き込めません: { $error }
agent-socket-mkdir = { $socket } のディレクトリを作成できません
agent-socket-dir-symlink = ソケットのディレクトリ { $dir } を使いません: シンボリックリンクです。削除するか、--socket で別の場所を指定してください
agent-socket-dir-not-dir = ソケットのディレクトリ { $dir } を使いません: ディレクトリではありません
agent-socket-dir-not-ours = ソケットのディレクトリ { $dir } を使いません: ユーザー { $uid } のもので、あなたのものではありません(エージェントになりすますために先に作られた可能性があります)。--socket で別の場所を指定するか XDG_RUNTIME_DIR を設定してください
agent-socket-dir-open = ソケットのディレクトリ { $dir } を使いません: モードが { $mode } で他のユーザーに開いています。'chmod 700 { $dir }' で非公開にしてください
agent-socket-stale = 古いソケット { $socket } を削除できません
agent-socket-listen = { $socket } で待ち受けできません
agent-socket-protect = { $socket } を保護できません
agent-cannot-start = エージェントを開始できません: { $error }

## 不正な形式の入力

mail-base64 = base64 の本文を復号できません: { $error }
mail-quoted-printable = quoted-printable の本文を復号できません
mail-unknown-encoding = 不明な Content-Transfer-Encoding「{ $encoding }」
from-missing = メールに From フィールドがありません
from-several-fields = メールに From フィールドが { $count } 個あります。From は 1 個だけです (RFC 5322 §3.6)。メールソフトは照合したものと別の From を表示するかもしれません
from-several-mailboxes = From フィールドに { $count } 個のメールボックスがあります。署名されたメールの差出人は 1 人だけです
from-group = From フィールドがメールボックスではなくグループです
from-control = From フィールドに制御文字があります (NUL で文字列が終わるソフトもあります)
from-name-claims = From の表示名が、照合したアドレス ({ $from }) と別のアドレス ({ $claim }) を示しています
inner-sender-unreadable = 署名された内容のヘッダーを読めないため、メールソフトが何を表示するか分かりません ({ $error })
inner-sender-from = 署名された内容の中の From: { $why }
inner-sender-differs = 署名された内容の差出人 ({ $inner }) が、メールに表示される From ({ $outer }) と異なります
inner-sender-content-types = 署名された内容に Content-Type フィールドが { $count } 個あります。どれを使うかはメールソフトによって異なります
from-not-an-address = From フィールドにメールアドレスがありません
from-bare-cr = ヘッダー行に単独の CR があります。メールソフトによっては行末と読みます
mail-first-line-continued = ヘッダーの最初の行が継続行です
mail-bad-header-line = ヘッダーの { $line } 行目が「名前: 値」の形ではありません
mail-bad-boundary = multipart の boundary がないか、70 文字を超えています
mail-too-many-parts = multipart の部分が { $most } 個を超えています
mail-no-closing-delimiter = multipart の本文に終わりの区切り '--{ $boundary }--' がありません
smime-neither = 入力はメール(ヘッダーフィールドがありません)でも CMS オブジェクトでもありません
smime-other-protocol = protocol が「{ $protocol }」の multipart/signed は S/MIME ではありません
smime-no-boundary = boundary のない multipart/signed です
smime-part-count = multipart/signed の部分が 2 個ではなく { $parts } 個です
smime-second-part = 2 番目の部分が application/pkcs7-signature ではなく { $mime } です
smime-not-smime = S/MIME のメッセージではありません(Content-Type { $mime })
mail-too-deep = MIME の部分の入れ子が { $levels } 階層を超えています
mail-part-no-boundary = { $mime } の部分に boundary パラメーターがありません
mail-multipart-encoding = multipart の部分に Content-Transfer-Encoding { $encoding } は使えません
mail-attached-message-8bit = 添付されたメッセージに 8 ビットのデータか長すぎる行があります。ファイルとして添付してください
pem-not-text = PEM がテキストではありません
pem-undecodable = PEM を復号できません: { $error }
pem-not-cms = PEM のラベル「{ $label }」は CMS ではありません
cms-not-content-info = CMS の ContentInfo ではありません: { $error }
cert-unparsable = 証明書を解析できません: { $error }
cert-too-large = { $size } バイトの証明書は受け付ける { $limit } KiB を超えています(巨大な拡張?)
cert-not-pem = { $what }: PEM 形式の証明書ではありません: { $error }
crl-pem-not-text = { $what }: テキストではない PEM です
crl-pem-no-end = { $what }: END 行のない PEM ブロックです
crl-bad-pem = { $what }: PEM が不正です: { $error }
crl-pem-other = { $what }: X509 CRL ではなく「{ $label }」の PEM ブロックです
crl-none-in = { $what }: CRL が含まれていません
ssmax-draft-no-boundary = boundary のない multipart/mixed の下書きです
ssmax-mixed-no-boundary = boundary のない multipart/mixed です
ssmax-marked-plaintext = 第 { $part } パート ({ $mime }) に SSMAX-Label または SSMAX-Filename がありますが、暗号化された添付ではありません。検査を通っていないパートが添付になりすましているため拒否します
ssmax-not-gcm = 添付「{ $label }」は { $algorithm } で暗号化されています。SSMAX の添付は AES-GCM の AuthEnvelopedData だけです
ssmax-nested-envelope = メールの内容か添付の中に S/MIME の封筒があります。検査で中を見られないため拒否します
ssmax-binding-certificate = '{ $issuer }' が発行した証明書 { $serial }
ssmax-unbound = 添付「{ $label }」は送信者に結び付けられていません。SSMAX の添付は送信者・ラベル・ファイル名を認証属性に持ちます
ssmax-label-not-bound = 添付「{ $label }」はラベル「{ $bound }」で暗号化されました。暗号化の後でラベルが変えられています
ssmax-filename-not-bound = 添付「{ $label }」は「{ $filename }」として送られていますが、「{ $bound }」として暗号化されました
ssmax-not-senders = 添付「{ $label }」を暗号化したのは { $originator } で、送信者「{ $sender }」ではなく、送信者がそれを開けたことも示されていません。組織は送信者自身が開けるものだけを鍵替えします
ssmax-too-many-forwards = この添付は { $most } 回を超えて転送されています
ssmax-entity-name = 添付「{ $label }」の中のファイル名は「{ $named }」で、「{ $filename }」ではありません
ssmax-entity-name-unreadable = 添付「{ $label }」の { $field } のファイル名が読めない形です
ssmax-entity-two-fields = 添付「{ $label }」に { $field } が 2 つあります。どちらを読むかはメールソフトによって違います
der-invalid = DER ではありません: { $error }
der-too-deep = DER の入れ子が { $levels } 階層を超えています
der-set-too-large = 要素が { $elements } 個の SET(受信者・証明書・属性)です。{ $most } 個を超えるものは拒否します
der-sort-budget = SET の要素が全体で多すぎます(確認する順序が { $most } を超えます)。解析前に拒否しました
ber-invalid = BER ではありません: { $error }
ber-too-deep = BER の入れ子が { $levels } 階層を超えています
ber-too-many-values = 構造化された値が { $most } 個を超えています。拒否しました
decrypt-gcm-tag = タグが { $bytes } バイトの AES-GCM(対応は 16 バイト)
decrypt-gcm-nonce = ノンスが { $bytes } バイトの AES-GCM(対応は 12 バイト)
decrypt-no-oaep = トークンは { $hash } の OAEP にも生の RSA にも対応していません
decrypt-key-transport = 鍵輸送アルゴリズム { $oid }
decrypt-static-originator = 送信者の静的な鍵による鍵合意
decrypt-oaep-hash = OAEP のハッシュ { $oid }
decrypt-mgf1-hash = MGF1 のハッシュ { $oid }
decrypt-oaep-mask = OAEP のマスク生成関数 { $oid }
decrypt-oaep-label = OAEP のラベルの出所 { $oid }
decrypt-key-agreement = 鍵合意アルゴリズム { $oid }(X25519/HKDF などにはまだ対応していません)
agent-queue-full = { $seconds } 秒間、新しい接続を受け付けていません
