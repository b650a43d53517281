# ssmax-card の日本語メッセージ。キーとプレースホルダーは en.ftl と同じ(単体テストで確認)。

## token/: PKCS#11 トークンの動作

token-module-load = PKCS#11 モジュール { $path } を読み込めません: { $reason }
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
sign-wanted-certificate = { $from } の署名用証明書
sign-wanted-personal = 個人の証明書(マイナンバーカード)
sign-from-not-address = --from「{ $from }」はメールアドレスではありません
sign-not-mime-entity = 入力が MIME エンティティではありません(Content-Type フィールドがありません)。署名する部分をヘッダーごと渡してください
sign-not-7bit = エンティティが 7 ビットでないか 998 文字を超える行があるため、中継で書き換えられて署名が壊れます。メールクライアントでエンコード(quoted-printable または base64)してください
sign-done = { $from } のメールに「{ $subject }」として署名しました(トークン「{ $token }」の鍵「{ $key }」、{ $scheme })
sign-operation = { $from } のメールに署名{ $to }
sign-operation-key = { $from } のメールに鍵「{ $key }」で署名{ $to }
sign-operation-to = { " " }(宛先 { $to })
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
agent-token-hung = トークンが「{ $what }」の間 { $seconds } 秒応答しませんでした(上限 { $limit } ミリ秒、[agent] token_timeout_ms)。エージェントは呼び出しを打ち切り、トークンのモジュールを読み込み直して再起動します。カードとリーダーを確認してからやり直してください

## エージェントのイベント

event-pin-needed = トークン「{ $token }」: { $operation }
event-certificate-expired = トークン「{ $token }」の証明書「{ $label }」は { $when } に期限切れになりました。更新してください
event-certificate-expiring = トークン「{ $token }」の証明書「{ $label }」は { $when } に期限切れになります(あと { $days } 日)。更新してください
event-token-removed = トークン「{ $token }」が取り外されました。セッションを閉じ、PIN を消去しました
event-token-removed-from = トークン「{ $token }」がリーダー「{ $reader }」から取り外されました。セッションを閉じ、PIN を消去しました
event-token-replaced = トークン「{ $token }」(シリアル { $serial })が差し替えられました。セッションを閉じ、PIN を消去しました
event-token-inserted = トークン「{ $token }」(シリアル { $serial })が接続されています
